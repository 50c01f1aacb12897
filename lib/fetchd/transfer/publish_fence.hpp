// SPDX-License-Identifier: Apache-2.0
#pragma once
// The publish fence of a fleet node (docs/fleet.md). A node may publish a job's file only while its claim on
// the job is surely still its own: after each successful renewal of its leases the daemon moves the deadline
// to (when that renewal started + the lease - a margin), and a Sink asked to publish later than that does not
// rename (the job then runs again elsewhere or later). A node stopped past its lease (SIGSTOP, a VM pause)
// therefore never replaces the file of the node that took its jobs over. Process-wide: it fences the
// transfers of this process (event-loop, curl-multi, thread-pool), not those of worker processes
// (process-pool). Thread: any; set on the control loop, read by every transfer thread.

#include <chrono>

namespace fetchd::transfer {

// time_point::max() (the default): no fence.
void set_publish_deadline(std::chrono::steady_clock::time_point deadline);
bool publish_allowed();

}  // namespace fetchd::transfer
