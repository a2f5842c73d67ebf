/* Linux's order of checks where a call has two things wrong (Linux gives
 * the first it checks): ioctl and fcntl with an unknown request on a closed
 * descriptor (EBADF), dup3 with bad flags (EINVAL), a path too long, execve
 * of a missing file with a bad argv (ENOENT), kill and tgkill of a missing
 * process with a bad signal (ESRCH), mincore with a bad vector, madvise
 * over a hole (ENOMEM), a fixed mapping low in memory. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
static void p(const char *what, long r) { printf("%s: %ld %s\n", what, r, r < 0 ? strerrorname_np(errno) : ""); }
int main(void) {
	p("ioctl closed fd unknown req", syscall(SYS_ioctl, 77, 0x12345678, 0));
	p("fcntl closed fd unknown cmd", syscall(SYS_fcntl, 77, 9999, 0));
	p("dup3 bad flags reserved fd", syscall(SYS_dup3, 1, 1020, 0x12345));
	p("dup3 bad flags", syscall(SYS_dup3, 1, 5, 0x12345));
	static char longp[5000]; memset(longp, 'a', sizeof longp - 1);
	p("open long path", syscall(SYS_open, longp, O_RDONLY));
	p("execve missing bad argv", syscall(SYS_execve, "/nonexistent/x", (char **)8, NULL));
	p("kill missing pid bad sig", syscall(SYS_kill, 999999, 999));
	p("tgkill missing bad sig", syscall(SYS_tgkill, 999999, 999999, 999));
	char *m = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p("mincore bad vec", syscall(SYS_mincore, m, 8192, (void *)8));
	munmap(m + 4096, 4096);
	p("madvise over a hole", syscall(SYS_madvise, m, 8192, MADV_DONTNEED));
	void *f = mmap((void *)0x10000, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	p("mmap 0x10000 fixed", f == MAP_FAILED ? -1 : 0);
	return 0;
}
