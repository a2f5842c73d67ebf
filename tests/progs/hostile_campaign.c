/* A seeded hostile campaign: `hostile_campaign SEED COUNT [trace]` makes
 * COUNT system calls drawn from a list, each argument drawn from garbage
 * (zero, -1, kernel and non-canonical addresses, huge lengths, reserved
 * descriptors) and from things that are real (a zeroed buffer, a buffer
 * that runs into a PROT_NONE page, a read-only page, /dev/zero, /dev/null,
 * a non-blocking pipe), and folds every result into a digest: the return
 * value exactly (its errno when it fails), except where a value is a pid
 * or a time, where only success counts. It prints the digest of every
 * block of 1000 calls, so a difference from Linux is found to its block;
 * `trace` prints every call instead, to find it to the call.
 *
 * Run natively and recorded, the lines must be equal; replayed, the
 * recording's. About 1% of the numbers carry garbage in their upper 32
 * bits, which Linux ignores (it reads the number as an int).
 *
 * What could hurt the machine, the test or the campaign itself is kept
 * out: calls that change ids, modes, times, limits or the memory layout,
 * signals, sleeping, process groups, writes of garbage lengths to the
 * standard streams (real pipes of the harness), and paths other than ""
 * (the buffers are zeroed before every call, so a path or an iovec read
 * from them is always "" or empty, and nothing a call wrote feeds the
 * next). Descriptors the calls open are closed after each call, so a
 * descriptor argument is one of ours or not open: none of them waits (the
 * pipe is non-blocking; splice, tee and vmsplice get SPLICE_F_NONBLOCK,
 * recvfrom MSG_DONTWAIT). Run it with standard input that does not wait
 * either (/dev/null). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include "warptest.h"

static uint64_t state;

static uint64_t draw(void)
{
	return xorshift64(&state);
}

/* Calls whose successful result is a pid or a time: only success counts. */
static int varies(long nr)
{
	return nr == SYS_getpid || nr == SYS_gettid || nr == SYS_getppid || nr == SYS_getpgrp ||
	       nr == SYS_getpgid || nr == SYS_getsid || nr == SYS_time || nr == SYS_times ||
	       nr == SYS_set_tid_address ||
	       /* The size of the kernel's CPU mask: the host's, one long here. */
	       nr == SYS_sched_getaffinity;
}

static const long calls[] = {
	SYS_read, SYS_write, SYS_open, SYS_stat, SYS_fstat, SYS_lstat, SYS_lseek,
	SYS_ioctl, SYS_pread64, SYS_pwrite64, SYS_readv, SYS_writev, SYS_access,
	SYS_pipe, SYS_dup, SYS_getitimer, SYS_getpid, SYS_sendfile, SYS_socket,
	SYS_connect, SYS_shutdown, SYS_bind, SYS_listen, SYS_socketpair,
	SYS_getsockname, SYS_getpeername, SYS_getsockopt, SYS_setsockopt,
	SYS_recvfrom, SYS_sendto, SYS_wait4, SYS_uname, SYS_flock, SYS_getdents,
	SYS_getcwd, SYS_mkdir, SYS_rmdir, SYS_creat, SYS_link, SYS_unlink,
	SYS_symlink, SYS_readlink, SYS_gettimeofday, SYS_getrlimit, SYS_getrusage,
	SYS_sysinfo, SYS_times, SYS_getuid, SYS_getgid, SYS_geteuid, SYS_getegid,
	SYS_getppid, SYS_getpgrp, SYS_getgroups, SYS_getresuid, SYS_getresgid,
	SYS_getpgid, SYS_getsid, SYS_mknod, SYS_statfs, SYS_fstatfs,
	SYS_getpriority, SYS_gettid, SYS_getxattr, SYS_lgetxattr, SYS_fgetxattr,
	SYS_listxattr, SYS_llistxattr, SYS_flistxattr, SYS_time,
	SYS_sched_getaffinity, SYS_getdents64, SYS_fadvise64, SYS_clock_gettime,
	SYS_clock_getres, SYS_openat, SYS_mkdirat, SYS_mknodat, SYS_newfstatat,
	SYS_unlinkat, SYS_linkat, SYS_symlinkat, SYS_readlinkat, SYS_faccessat,
	SYS_eventfd, SYS_eventfd2, SYS_pipe2, SYS_preadv, SYS_pwritev,
	SYS_getrandom, SYS_memfd_create, SYS_statx, 439 /* faccessat2 */,
	SYS_inotify_init1, SYS_inotify_add_watch, SYS_inotify_rm_watch,
	SYS_capget, SYS_getcpu, SYS_sched_getparam, SYS_sched_getscheduler,
	SYS_sched_rr_get_interval, SYS_sched_getattr, SYS_preadv2, SYS_pwritev2,
	SYS_mlock, SYS_munlock, SYS_mlock2, SYS_openat2, SYS_mincore,
	SYS_madvise, SYS_msync, SYS_close_range, SYS_dup3, SYS_fsync,
	SYS_fdatasync, SYS_ftruncate, SYS_fchdir, SYS_sync_file_range,
	SYS_vmsplice, SYS_timerfd_create,
	SYS_timerfd_gettime, SYS_epoll_create1, SYS_epoll_ctl, SYS_signalfd4,
	SYS_rt_sigprocmask, SYS_sigaltstack, SYS_rt_sigpending,
	SYS_set_tid_address, SYS_get_robust_list, SYS_prctl, SYS_arch_prctl,
	SYS_umask, SYS_personality, SYS_ioprio_get, SYS_membarrier,
	1000, 100000,
	/* Not here: splice, tee, copy_file_range, kcmp, name_to_handle_at and
	 * process_vm_readv, which Warpspeed does not answer yet (ENOSYS). */
};

enum { SCRATCH = 64 * 1024, EDGE_ROOM = 64 };

static char *scratch, *edge, *rodata;
static int dev_zero, dev_null, pipe_r, pipe_w;

/* An argument: garbage three times in four, something real otherwise. */
static uint64_t argument(void)
{
	static const uint64_t garbage[] = {
		0, 1, 2, UINT64_MAX, 0xffffffffffff0000ull, 0x7ffffffff000ull,
		0x800000000000ull, 1020, 0x7fffffffull, 4096, 1ull << 40, 16, 64,
		0x80000000ull, 0x100,
	};
	uint64_t r = draw();
	if (r % 4 != 0)
		return garbage[(r >> 8) % (sizeof garbage / sizeof garbage[0])];
	switch ((r >> 8) % 8) {
	case 0: return (uint64_t)scratch;
	case 1: return (uint64_t)edge;
	case 2: return (uint64_t)rodata;
	case 3: return (uint64_t)dev_zero;
	case 4: return (uint64_t)dev_null;
	case 5: return (uint64_t)pipe_r;
	case 6: return (uint64_t)pipe_w;
	default: return (uint64_t)(scratch + SCRATCH / 2);
	}
}

/* An argument as the trace prints it: our buffers by name, since their
 * addresses differ from run to run. */
static const char *shown(uint64_t a)
{
	static char text[32];
	if (a == (uint64_t)scratch)
		return "scratch";
	if (a == (uint64_t)(scratch + SCRATCH / 2))
		return "scratch+32k";
	if (a == (uint64_t)(scratch + SCRATCH - 8))
		return "scratch+64k-8";
	if (a == (uint64_t)edge)
		return "edge";
	if (a == (uint64_t)rodata)
		return "rodata";
	snprintf(text, sizeof text, "%#" PRIx64, a);
	return text;
}

/* Arguments that would hurt are replaced by harmless garbage. */
static void tame(long nr, uint64_t a[6])
{
	/* Garbage lengths to the harness's pipes. */
	if ((nr == SYS_write || nr == SYS_pwrite64 || nr == SYS_writev || nr == SYS_pwritev ||
	     nr == SYS_pwritev2 || nr == SYS_sendfile || nr == SYS_sendto || nr == SYS_lseek ||
	     nr == SYS_ftruncate || nr == SYS_fsync || nr == SYS_fdatasync || nr == SYS_vmsplice ||
	     nr == SYS_flock || nr == SYS_ioctl || nr == SYS_shutdown) &&
	    (uint32_t)a[0] <= 2)
		a[0] = 1020;
	if ((nr == SYS_splice || nr == SYS_tee || nr == SYS_copy_file_range) && (uint32_t)a[2] <= 2)
		a[2] = 1020;
	if (nr == SYS_sendfile && (uint32_t)a[1] <= 2)
		a[1] = 1020;
	/* The program sees no process but itself: a pid is ours (0) or one no
	 * process has (above any pid_max), never one of the host's. */
	if (nr == SYS_sched_getaffinity || nr == SYS_sched_getparam || nr == SYS_sched_getscheduler ||
	    nr == SYS_sched_rr_get_interval || nr == SYS_sched_getattr || nr == SYS_getpgid ||
	    nr == SYS_getsid || nr == SYS_get_robust_list || nr == SYS_wait4 || nr == SYS_getpriority ||
	    nr == SYS_ioprio_get)
		a[nr == SYS_getpriority || nr == SYS_ioprio_get ? 1 : 0] = a[0] % 2 ? 0 : 0x7ffffff0;
	/* A write from a buffer that runs into a page it cannot read stops
	 * there: Linux's answer for a file, but a pipe fails whole (EFAULT)
	 * and /dev/null takes every byte without reading one, a documented
	 * difference; so does a pipe's read into such a buffer. */
	if (nr == SYS_write || nr == SYS_pwrite64 || nr == SYS_sendto || nr == SYS_read || nr == SYS_recvfrom) {
		if (a[1] == (uint64_t)edge && a[2] > EDGE_ROOM)
			a[2] = EDGE_ROOM;
		if (a[1] == (uint64_t)rodata && a[2] > 4096)
			a[2] = 4096;
		if (a[1] == (uint64_t)(scratch + SCRATCH / 2) && a[2] > SCRATCH / 2)
			a[2] = SCRATCH / 2;
		if (a[1] == (uint64_t)scratch && a[2] > SCRATCH)
			a[2] = SCRATCH;
	}
	/* MS_INVALIDATE on locked memory is EBUSY: warpd keeps no record of
	 * what mlock locked (every page is resident anyway). */
	if (nr == SYS_msync)
		a[2] &= ~2ull;
	/* Two of our descriptors are /dev/null: a lock through one would
	 * wait for the other's for ever. */
	if (nr == SYS_flock)
		a[1] |= 4; /* LOCK_NB */
	/* Our own descriptors, the streams and the reserved range stay open. */
	if (nr == SYS_close_range)
		a[0] = 7 + a[0] % 200, a[1] = a[0] + a[1] % 100;
	if (nr == SYS_dup3 && ((uint32_t)a[1] <= 6 || (uint32_t)a[1] >= 300))
		a[1] = 200;
	if (nr == SYS_splice || nr == SYS_tee)
		a[nr == SYS_tee ? 3 : 5] |= 2; /* SPLICE_F_NONBLOCK */
	if (nr == SYS_vmsplice)
		a[3] |= 2;
	if (nr == SYS_recvfrom)
		a[3] |= 0x40; /* MSG_DONTWAIT */
	/* Nothing changes the mask, the altstack, the tid address, the
	 * working directory, the umask, the personality or the memory. */
	if (nr == SYS_rt_sigprocmask)
		a[1] = 0;
	if (nr == SYS_sigaltstack)
		a[0] = 0;
	if (nr == SYS_set_tid_address)
		a[0] = (uint64_t)(scratch + SCRATCH - 8);
	if (nr == SYS_fchdir)
		a[0] = 1020;
	if (nr == SYS_umask)
		a[0] = 022;
	if (nr == SYS_personality)
		a[0] = 0xffffffff;
	if (nr == SYS_madvise)
		a[2] = 0; /* MADV_NORMAL */
	if (nr == SYS_prctl && a[0] != 16 /* PR_GET_NAME */ && a[0] != 3 /* PR_GET_DUMPABLE */)
		a[0] = 0x7fffffff;
	if (nr == SYS_arch_prctl)
		a[0] = 0x1003; /* ARCH_GET_FS */
	if (nr == SYS_mlock || nr == SYS_mlock2 || nr == SYS_munlock)
		a[1] &= 0xffff; /* no locking of gigabytes */
	if (nr == SYS_timerfd_create || nr == SYS_epoll_ctl)
		a[3] = 0;
}

/* Closes what a call opened, so that no descriptor above ours is open
 * at the next call: the one it returned, or the two pipe, pipe2 and
 * socketpair wrote (a count that is not a descriptor is closed in vain). */
static void forget_new_fds(long nr, const uint64_t a[6], long r)
{
	if (r >= 7 && r < 65536)
		close((int)r);
	if ((nr == SYS_pipe || nr == SYS_pipe2 || nr == SYS_socketpair) && r == 0) {
		const int *fds = (const int *)(nr == SYS_socketpair ? a[3] : a[0]);
		close(fds[0]);
		close(fds[1]);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: hostile_campaign SEED COUNT [trace]\n");
		return 2;
	}
	state = strtoull(argv[1], NULL, 0) * 0x9e3779b97f4a7c15ull + 1;
	long count = strtol(argv[2], NULL, 0);
	int trace = argc > 3 && strcmp(argv[3], "trace") == 0;
	if (trace)
		setvbuf(stdout, NULL, _IOLBF, 0);

	/* Each buffer ends at a PROT_NONE page: a huge read into it stops
	 * there. They are at fixed addresses: a pointer drawn as a length,
	 * a pid or a descriptor (an int of its low 32 bits) must be the same
	 * number on every run. */
	int fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
	scratch = mmap((void *)0x40010000, SCRATCH + 4096, PROT_READ | PROT_WRITE, fixed, -1, 0);
	char *pair = mmap((void *)0x40030000, 8192, PROT_READ | PROT_WRITE, fixed, -1, 0);
	rodata = mmap((void *)0x40040000, 4096, PROT_READ, fixed, -1, 0);
	CHECK(scratch == (void *)0x40010000 && pair == (void *)0x40030000 && rodata == (void *)0x40040000);
	CHECK(mprotect(pair + 4096, 4096, PROT_NONE) == 0);
	CHECK(mprotect(scratch + SCRATCH, 4096, PROT_NONE) == 0);
	edge = pair + 4096 - EDGE_ROOM;
	dev_zero = open("/dev/zero", O_RDONLY);
	dev_null = open("/dev/null", O_RDWR);
	int p[2];
	CHECK(pipe2(p, O_NONBLOCK) == 0);
	pipe_r = p[0], pipe_w = p[1];
	CHECK(dev_zero == 3 && dev_null == 4 && pipe_r == 5 && pipe_w == 6);

	uint64_t digest = FNV_INIT, block = FNV_INIT;
	for (long i = 0; i < count; i++) {
		long nr = calls[draw() % (sizeof calls / sizeof calls[0])];
		uint64_t a[6];
		for (int k = 0; k < 6; k++)
			a[k] = argument();
		tame(nr, a);
		uint64_t number = (uint64_t)nr;
		if (draw() % 100 == 0)
			number |= draw() << 32;
		memset(scratch, 0, SCRATCH);
		memset(edge, 0, EDGE_ROOM);
		if (trace) {
			printf("%ld %#" PRIx64 "(", i, number);
			for (int k = 0; k < 6; k++)
				printf("%s%s", k ? ", " : "", shown(a[k]));
			printf(") = ");
			fflush(stdout);
		}
		errno = 0;
		long r = syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
		int64_t seen = r < 0 ? -errno : varies(nr) ? 0 : r;
		if (trace)
			printf("%" PRId64 "\n", seen);
		block = fnv1a(block, &seen, sizeof seen);
		digest = fnv1a(digest, &seen, sizeof seen);
		forget_new_fds(nr, a, r);
		if (i % 1000 == 999 || i == count - 1) {
			if (!trace)
				printf("calls %ld-%ld: %016" PRIx64 "\n", i - i % 1000, i, block);
			block = FNV_INIT;
		}
	}
	printf("made %ld hostile calls, digest %016" PRIx64 "\n", count, digest);
	return 0;
}
