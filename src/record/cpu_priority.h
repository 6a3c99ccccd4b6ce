// CPU priority of background work (the recorder thread and its PostgreSQL backend): idle while
// requests are served, normal while the work falls behind its memory bound.
//
// kIdle is SCHED_IDLE at nice 19: the thread runs when a CPU has nothing else to run. Lowering
// is always allowed; raising back is not: Linux lets a thread leave SCHED_IDLE (or lower its
// nice value) only with CAP_SYS_NICE or a high enough RLIMIT_NICE. canRaiseCpuPriority() says
// whether this process may, and callers that must be able to raise again lower only then.
#pragma once

#include <sys/types.h>

namespace flux::record {

enum class CpuPriority { kNormal, kIdle };

// Whether this process may return a thread or a process it lowered to normal priority
// (SCHED_OTHER, nice 0): CAP_SYS_NICE in effect, or an RLIMIT_NICE of 20.
bool canRaiseCpuPriority();

// Sets the scheduling policy and nice value of a thread (gettid()) or a process. Best effort:
// returns false when the kernel refused (no right, or no such id) and leaves what it could not
// change.
bool setCpuPriority(pid_t id, CpuPriority priority);

}  // namespace flux::record
