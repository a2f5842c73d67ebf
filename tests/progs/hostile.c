/* A hostile program: calls many system calls with garbage arguments
 * (tiny, kernel, non-canonical and just-below-the-top addresses, huge
 * lengths, descriptors in the broker's reserved range, negative numbers)
 * and checks a few answers that must match Linux exactly. warpd and the
 * broker must survive all of it; the program prints the same lines
 * natively and recorded and exits 0.
 *
 * Calls that could hurt the machine or the test (changing ids, modes or
 * times of real files, closing or redirecting stdio, signals, memory
 * layout, sleeping, process groups) are not called. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include "warptest.h"

static const uint64_t values[] = {
	0,
	1,
	UINT64_MAX,                  /* -1 */
	0xffffffffffff0000ull,       /* kernel half */
	0x7ffffffff000ull,           /* the last user page (warpd's trampoline) */
	0x800000000000ull,           /* first non-canonical address */
	1020,                        /* in the broker's reserved fd range */
	0x7fffffffull,
	4096,
	1ull << 40,
};

static const long calls[] = {
	SYS_read, SYS_write, SYS_open, SYS_stat, SYS_fstat, SYS_lstat, SYS_lseek,
	SYS_ioctl, SYS_pread64, SYS_pwrite64, SYS_readv, SYS_writev, SYS_access,
	SYS_pipe, SYS_dup, SYS_getitimer, SYS_getpid, SYS_sendfile, SYS_socket,
	SYS_connect, SYS_shutdown, SYS_bind, SYS_listen, SYS_socketpair,
	SYS_setsockopt, SYS_wait4, SYS_uname, SYS_flock, SYS_getdents, SYS_getcwd,
	SYS_rename, SYS_mkdir, SYS_rmdir, SYS_creat, SYS_link, SYS_unlink,
	SYS_symlink, SYS_readlink, SYS_gettimeofday, SYS_getrlimit, SYS_getrusage,
	SYS_sysinfo, SYS_times, SYS_getuid, SYS_getgid, SYS_geteuid, SYS_getegid,
	SYS_getppid, SYS_getpgrp, SYS_getgroups, SYS_getresuid, SYS_getresgid,
	SYS_getpgid, SYS_getsid, SYS_sigaltstack, SYS_mknod, SYS_statfs,
	SYS_fstatfs, SYS_getpriority, SYS_gettid, SYS_getxattr, SYS_lgetxattr,
	SYS_fgetxattr, SYS_listxattr, SYS_llistxattr, SYS_flistxattr, SYS_time,
	SYS_sched_getaffinity, SYS_getdents64, SYS_fadvise64, SYS_clock_gettime,
	SYS_clock_getres, SYS_openat, SYS_mkdirat, SYS_mknodat, SYS_newfstatat,
	SYS_unlinkat, SYS_renameat, SYS_linkat, SYS_symlinkat, SYS_readlinkat,
	SYS_faccessat, SYS_eventfd, SYS_eventfd2, SYS_pipe2, SYS_preadv,
	SYS_pwritev, SYS_prlimit64, SYS_renameat2, SYS_getrandom, SYS_memfd_create,
	SYS_statx, 439 /* faccessat2 */, SYS_inotify_add_watch, SYS_inotify_rm_watch,
	SYS_capget, SYS_getcpu, SYS_sched_getparam, SYS_sched_getscheduler,
	SYS_sched_rr_get_interval, SYS_sched_getattr, SYS_preadv2, SYS_mlock,
	SYS_munlock, SYS_mlock2, SYS_openat2, SYS_fremovexattr, 1000, 100000,
};

static uint64_t state = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
	return xorshift64(&state);
}

static void expect(const char *what, long r, int want)
{
	int e = errno;
	printf("%s: %s%s\n", what, r < 0 ? errname(e) : "succeeded",
	       r < 0 && e == want ? "" : " (UNEXPECTED)");
}

int main(void)
{
	long n = 0;
	for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
		for (int round = 0; round < 40; round++) {
			uint64_t a[6];
			for (int i = 0; i < 6; i++)
				a[i] = values[next() % (sizeof values / sizeof values[0])];
			/* Keep descriptors 0-2 of the caller out of writes of
			 * garbage lengths: they are real pipes. */
			if ((calls[c] == SYS_write || calls[c] == SYS_pwrite64 || calls[c] == SYS_writev ||
			     calls[c] == SYS_pwritev || calls[c] == SYS_sendfile || calls[c] == SYS_lseek) && a[0] <= 2)
				a[0] = 1020;
			syscall(calls[c], a[0], a[1], a[2], a[3], a[4], a[5]);
			n++;
		}
	}
	printf("made %ld hostile calls\n", n);

	/* Answers that must be exactly Linux's. */
	char buf[16];
	expect("read into the last user page", syscall(SYS_read, 0, 0x7ffffffff000ull, 16), EFAULT);
	expect("write from the last user page", syscall(SYS_write, 1, 0x7ffffffff000ull, 16), EFAULT);
	expect("open of a kernel-address path", syscall(SYS_open, 0xffffffffffff0000ull, O_RDONLY), EFAULT);
	expect("fstat of an unopened descriptor", syscall(SYS_fstat, 1020, buf), EBADF);
	expect("close of an unopened descriptor", close(1021), EBADF);
	char longpath[5000];
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[sizeof longpath - 1] = 0;
	expect("open of a too-long path", syscall(SYS_open, longpath, O_RDONLY), ENAMETOOLONG);
	expect("readv with too many iovecs", syscall(SYS_readv, 0, buf, 5000), EINVAL);
	expect("ioctl with an unknown request", syscall(SYS_ioctl, 1, 0xdead, 0), ENOTTY);
	puts("EXIT-SUCCESS");
	return 0;
}
