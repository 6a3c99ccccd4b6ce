#include "record/cpu_priority.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

namespace flux::record {
namespace {

struct Observed {
  int policy = -1;
  int nice = -100;
};

Observed observe(pid_t thread) {
  errno = 0;
  return {sched_getscheduler(thread), getpriority(PRIO_PROCESS, static_cast<id_t>(thread))};
}

// On a thread of its own: the test's main thread keeps its priority whatever happens.
TEST(CpuPriorityTest, IdleAndBackAsFarAsThisProcessMay) {
  bool can_raise = canRaiseCpuPriority();
  std::thread([can_raise] {
    pid_t self = gettid();
    ASSERT_TRUE(setCpuPriority(self, CpuPriority::kIdle));
    Observed idle = observe(self);
    EXPECT_EQ(idle.policy, SCHED_IDLE);
    EXPECT_EQ(idle.nice, 19);

    bool raised = setCpuPriority(self, CpuPriority::kNormal);
    EXPECT_EQ(raised, can_raise) << "canRaiseCpuPriority() must predict what the kernel allows";
    Observed normal = observe(self);
    if (can_raise) {
      EXPECT_EQ(normal.policy, SCHED_OTHER);
      EXPECT_EQ(normal.nice, 0);
    } else {
      EXPECT_EQ(normal.policy, SCHED_IDLE);
    }
  }).join();
}

TEST(CpuPriorityTest, AnIdThatDoesNotExistIsRefused) {
  // Beyond pid_max (at most 2^22): no such thread or process.
  EXPECT_FALSE(setCpuPriority(1 << 23, CpuPriority::kIdle));
  EXPECT_FALSE(setCpuPriority(1 << 23, CpuPriority::kNormal));
}

}  // namespace
}  // namespace flux::record
