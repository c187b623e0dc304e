/* The syscall cost a boundary adds: two million getppid(2) calls, timed by the workload
 * itself; prints nanoseconds per call. getppid is decided by number alone in every bvisor
 * filter, so the kernel's seccomp action cache should make it cost what it costs bare. */
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(void)
{
    enum { CALLS = 2000000 };
    struct timespec start, end;
    if (clock_gettime(CLOCK_MONOTONIC, &start) != 0)
        return 1;
    for (int i = 0; i < CALLS; i++)
        syscall(SYS_getppid);
    if (clock_gettime(CLOCK_MONOTONIC, &end) != 0)
        return 1;
    printf("%.1f\n", ((double)(end.tv_sec - start.tv_sec) * 1e9 + (double)(end.tv_nsec - start.tv_nsec)) / CALLS);
    return 0;
}
