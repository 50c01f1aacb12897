// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/transfer_types.hpp"

namespace fetchd::core {

std::string_view to_string(OnExists v) {
  switch (v) {
    case OnExists::kSkip: return "skip";
    case OnExists::kOverwrite: return "overwrite";
    case OnExists::kFail: return "fail";
  }
  return "?";
}

std::string_view to_string(ErrorCategory c) {
  switch (c) {
    case ErrorCategory::kNone: return "ok";
    case ErrorCategory::kResolve: return "resolve";
    case ErrorCategory::kConnect: return "connect";
    case ErrorCategory::kTls: return "tls";
    case ErrorCategory::kTimeout: return "timeout";
    case ErrorCategory::kPartial: return "partial";
    case ErrorCategory::kHttpStatus: return "http-status";
    case ErrorCategory::kProtocol: return "protocol";
    case ErrorCategory::kRedirect: return "redirect";
    case ErrorCategory::kSize: return "size";
    case ErrorCategory::kChecksum: return "checksum";
    case ErrorCategory::kFilesystem: return "filesystem";
    case ErrorCategory::kDestExists: return "dest-exists";
    case ErrorCategory::kCancelled: return "cancelled";
    case ErrorCategory::kInternal: return "internal";
  }
  return "?";
}

}  // namespace fetchd::core
