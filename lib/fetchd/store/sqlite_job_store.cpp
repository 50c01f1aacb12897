// SPDX-License-Identifier: Apache-2.0
#include "fetchd/store/job_store.hpp"

namespace fetchd::store {

std::unique_ptr<JobStore> open_sqlite_store(const std::filesystem::path& path, const SqliteOptions&) {
  throw StoreError(path.string() + ": not implemented yet");
}

}  // namespace fetchd::store
