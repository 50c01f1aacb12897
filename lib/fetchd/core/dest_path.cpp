// SPDX-License-Identifier: Apache-2.0
#include "fetchd/core/dest_path.hpp"
