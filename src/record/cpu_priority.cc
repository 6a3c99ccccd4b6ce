#include "record/cpu_priority.h"

#include <linux/capability.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace flux::record {
namespace {

constexpr int kIdleNice = 19;
constexpr int kNormalNice = 0;

bool hasSysNice() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_TO_INDEX(CAP_SYS_NICE)].effective & CAP_TO_MASK(CAP_SYS_NICE)) != 0;
}

}  // namespace

bool canRaiseCpuPriority() {
  // RLIMIT_NICE n allows nice values down to 20 - n.
  rlimit limit{};
  if (getrlimit(RLIMIT_NICE, &limit) == 0 &&
      (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= rlim_t{20 - kNormalNice})) {
    return true;
  }
  return hasSysNice();
}

bool setCpuPriority(pid_t id, CpuPriority priority) {
  sched_param param{};
  if (priority == CpuPriority::kIdle) {
    bool niced = setpriority(PRIO_PROCESS, static_cast<id_t>(id), kIdleNice) == 0;
    return sched_setscheduler(id, SCHED_IDLE, &param) == 0 && niced;
  }
  // Leave SCHED_IDLE first: the kernel checks the nice value the thread has at that moment.
  bool policy = sched_setscheduler(id, SCHED_OTHER, &param) == 0;
  return setpriority(PRIO_PROCESS, static_cast<id_t>(id), kNormalNice) == 0 && policy;
}

}  // namespace flux::record
