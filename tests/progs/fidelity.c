/* Linux calls beyond the basics (issue 12), each printed as a result that
 * does not depend on the run: inotify, extended attributes, mlock and its
 * kin, the scheduler queries, capget, personality, getcpu, preadv2 and
 * pwritev2, openat2 (with /proc/self through it), sync_file_range,
 * membarrier, vmsplice, adjtimex and ioprio_get. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/membarrier.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timex.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include "warptest.h"

static char dir[256];

static void path_of(char *out, size_t n, const char *name)
{
	snprintf(out, n, "%s/%s", dir, name);
}

static void inotify(void)
{
	int fd = inotify_init1(IN_CLOEXEC);
	CHECK(fd >= 0);
	int wd = inotify_add_watch(fd, dir, IN_CREATE | IN_DELETE);
	CHECK(wd >= 0);
	char p[320];
	path_of(p, sizeof p, "watched");
	int f = open(p, O_CREAT | O_WRONLY, 0600);
	CHECK(f >= 0);
	close(f);
	CHECK(unlink(p) == 0);
	printf("inotify_add_watch on a new directory: %s\n", wd == 1 ? "watch 1" : "another");
	char buf[4096] __attribute__((aligned(8)));
	int seen = 0;
	while (seen < 2) {
		ssize_t n = read(fd, buf, sizeof buf);
		CHECK(n > 0);
		for (char *q = buf; q < buf + n;) {
			struct inotify_event *e = (struct inotify_event *)q;
			printf("inotify: %s %s\n", e->mask & IN_CREATE ? "IN_CREATE" : e->mask & IN_DELETE ? "IN_DELETE" : "other", e->len ? e->name : "");
			seen++;
			q += sizeof *e + e->len;
		}
	}
	printf("inotify_rm_watch: %s\n", result_text(inotify_rm_watch(fd, wd)));
	printf("inotify_rm_watch again: %s\n", result_text(inotify_rm_watch(fd, wd)));
	close(fd);
	int old = syscall(SYS_inotify_init);
	printf("inotify_init: %s\n", old >= 0 ? "a descriptor" : errname(errno));
	if (old >= 0)
		close(old);
}

static void xattrs(void)
{
	char p[320];
	path_of(p, sizeof p, "attrs");
	int f = open(p, O_CREAT | O_RDWR, 0600);
	CHECK(f >= 0);
	long r = setxattr(p, "user.warp", "value", 5, XATTR_CREATE);
	printf("setxattr: %s\n", result_text(r));
	if (r == 0) {
		char v[16] = { 0 };
		printf("getxattr: %s", result_text(getxattr(p, "user.warp", v, sizeof v)));
		printf(" %s\n", v);
		printf("setxattr XATTR_CREATE again: %s\n", result_text(setxattr(p, "user.warp", "x", 1, XATTR_CREATE)));
		printf("fsetxattr: %s\n", result_text(fsetxattr(f, "user.two", "2", 1, 0)));
		char list[64];
		long n = listxattr(p, list, sizeof list);
		printf("listxattr: %s", result_text(n));
		for (long i = 0; i < n; i += strlen(list + i) + 1)
			printf(" %s", list + i);
		printf("\n");
		printf("fgetxattr too small: %s\n", result_text(fgetxattr(f, "user.warp", v, 2)));
		printf("removexattr: %s\n", result_text(removexattr(p, "user.warp")));
		printf("lremovexattr: %s\n", result_text(lremovexattr(p, "user.warp")));
		printf("fremovexattr: %s\n", result_text(fremovexattr(f, "user.two")));
		printf("lgetxattr gone: %s\n", result_text(lgetxattr(p, "user.warp", v, sizeof v)));
	}
	close(f);
	unlink(p);
}

static void locks(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *m = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED);
	printf("mlock unaligned: %s\n", result_text(mlock(m + 100, page)));
	printf("munlock: %s\n", result_text(munlock(m + 100, page)));
	printf("mlock2 MLOCK_ONFAULT: %s\n", result_text(syscall(SYS_mlock2, m, page, 1)));
	printf("mlock2 bad flags: %s\n", result_text(syscall(SYS_mlock2, m, page, 2)));
	printf("mlock nothing: %s\n", result_text(mlock(m, 0)));
	CHECK(munmap(m + page, page) == 0);
	printf("mlock over a hole: %s\n", result_text(mlock(m, 3 * page)));
	printf("munlock over a hole: %s\n", result_text(munlock(m, 3 * page)));
	printf("mlockall 0: %s\n", result_text(mlockall(0)));
	printf("mlockall MCL_ONFAULT alone: %s\n", result_text(mlockall(MCL_ONFAULT)));
	printf("mlockall MCL_FUTURE: %s\n", result_text(mlockall(MCL_FUTURE)));
	printf("munlockall: %s\n", result_text(munlockall()));
}

static void scheduler(void)
{
	printf("sched_getscheduler: %s\n", result_text(sched_getscheduler(0)));
	printf("sched_get_priority_max FIFO: %s\n", result_text(sched_get_priority_max(SCHED_FIFO)));
	printf("sched_get_priority_min RR: %s\n", result_text(sched_get_priority_min(SCHED_RR)));
	printf("sched_get_priority_max 99: %s\n", result_text(sched_get_priority_max(99)));
	struct sched_param sp = { .sched_priority = 7 };
	printf("sched_getparam: %s", result_text(sched_getparam(0, &sp)));
	printf(" priority %d\n", sp.sched_priority);
	printf("sched_setscheduler OTHER: %s\n", result_text(sched_setscheduler(0, SCHED_OTHER, &sp)));
	printf("sched_setparam: %s\n", result_text(sched_setparam(0, &sp)));
	struct timespec ts;
	printf("sched_rr_get_interval: %s\n", result_text(sched_rr_get_interval(0, &ts)));
	uint32_t attr[14] = { 0 };
	long r = syscall(SYS_sched_getattr, 0, attr, sizeof attr, 0);
	printf("sched_getattr: %s size %u policy %u\n", result_text(r), attr[0], attr[1]);
	printf("sched_getattr flags 1: %s\n", result_text(syscall(SYS_sched_getattr, 0, attr, sizeof attr, 1)));
}

static void identity(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	long r = syscall(SYS_capget, &h, d);
	printf("capget: %s, %s\n", result_text(r), d[0].effective == d[0].permitted ? "effective = permitted" : "effective differs");
	h.version = 0x1234;
	r = syscall(SYS_capget, &h, NULL);
	printf("capget bad version: %s, version now %#x\n", result_text(r), h.version);
	printf("personality query: %#x\n", personality(0xffffffff));
	unsigned cpu = 99, node = 99;
	r = syscall(SYS_getcpu, &cpu, &node, NULL);
	printf("getcpu: %s node %u\n", result_text(r), node);
	long prio = syscall(SYS_ioprio_get, 1, 0);
	printf("ioprio_get: %s\n", prio >= 0 ? "a priority" : errname(errno));
	printf("ioprio_get bad which: %s\n", result_text(syscall(SYS_ioprio_get, 9, 0)));
	struct timex tx = { .modes = 0 };
	r = adjtimex(&tx);
	printf("adjtimex read: %s\n", r >= 0 ? "a clock state" : errname(errno));
	struct timespec t = { 0, 0 };
	printf("clock_settime MONOTONIC: %s\n", result_text(clock_settime(CLOCK_MONOTONIC, &t)));
}

static void vectors_and_opens(void)
{
	char p[320];
	path_of(p, sizeof p, "vectors");
	int f = open(p, O_CREAT | O_RDWR | O_TRUNC, 0600);
	CHECK(f >= 0);
	struct iovec w[2] = { { "hello ", 6 }, { "world\n", 6 } };
	printf("pwritev2 at 0: %s\n", result_text(pwritev2(f, w, 2, 0, 0)));
	printf("pwritev2 at -1: %s\n", result_text(pwritev2(f, w, 1, -1, 0)));
	printf("pwritev2 bad flags: %s\n", result_text(pwritev2(f, w, 1, 0, 0x40000000)));
	char a[7] = { 0 }, b[7] = { 0 };
	struct iovec r[2] = { { a, 6 }, { b, 6 } };
	printf("preadv2 at 0: %s", result_text(preadv2(f, r, 2, 0, 0)));
	printf(" [%s|%s]\n", a, b);
	printf("sync_file_range: %s\n", result_text(sync_file_range(f, 0, 0, SYNC_FILE_RANGE_WRITE)));
	printf("sync_file_range bad flags: %s\n", result_text(sync_file_range(f, 0, 0, 8)));
	close(f);

	struct open_how how = { .flags = O_RDONLY | O_CLOEXEC };
	int g = syscall(SYS_openat2, AT_FDCWD, p, &how, sizeof how);
	printf("openat2: %s\n", g >= 0 ? "a descriptor" : errname(errno));
	if (g >= 0) {
		char buf[16] = { 0 };
		printf("read through it: %s %.5s\n", result_text(read(g, buf, 5)), buf);
		close(g);
	}
	char l[320];
	path_of(l, sizeof l, "link");
	CHECK(symlink(p, l) == 0);
	how.resolve = RESOLVE_NO_SYMLINKS;
	printf("openat2 RESOLVE_NO_SYMLINKS through a link: %s\n", result_text(syscall(SYS_openat2, AT_FDCWD, l, &how, sizeof how)));
	printf("openat2 small struct: %s\n", result_text(syscall(SYS_openat2, AT_FDCWD, p, &how, 8)));
	how.resolve = 0;
	how.mode = 0600;
	printf("openat2 mode without O_CREAT: %s\n", result_text(syscall(SYS_openat2, AT_FDCWD, p, &how, sizeof how)));
	how.mode = 0;
	int s = syscall(SYS_openat2, AT_FDCWD, "/proc/self/status", &how, sizeof how);
	CHECK(s >= 0);
	char st[256] = { 0 };
	CHECK(read(s, st, sizeof st - 1) > 0);
	*strchrnul(st, '\n') = 0;
	printf("openat2 /proc/self/status: %s\n", st);
	close(s);
	unlink(l);
	unlink(p);
}

static void barriers_and_splices(void)
{
	long mask = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	printf("membarrier query: %s\n", mask >= 0 && (mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ? "private expedited offered" : "no");
	printf("membarrier global: %s\n", result_text(syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0)));
	printf("membarrier private before registering: %s\n", result_text(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)));
	printf("membarrier register: %s\n", result_text(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0)));
	printf("membarrier private: %s\n", result_text(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)));
	printf("membarrier bad: %s\n", result_text(syscall(SYS_membarrier, 1 << 20, 0, 0)));
	printf("membarrier bad flags: %s\n", result_text(syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 4, 0)));
	int p[2];
	CHECK(pipe(p) == 0);
	struct iovec v[2] = { { "spliced ", 8 }, { "bytes", 5 } };
	printf("vmsplice: %s\n", result_text(vmsplice(p[1], v, 2, 0)));
	char buf[32] = { 0 };
	printf("read: %s %s\n", result_text(read(p[0], buf, sizeof buf - 1)), buf);
	printf("vmsplice to a file: %s\n", result_text(vmsplice(open("/dev/null", O_WRONLY), v, 1, 0)));
	close(p[0]);
	close(p[1]);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	snprintf(dir, sizeof dir, "%s/fidelity-XXXXXX", argc > 1 ? argv[1] : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	inotify();
	xattrs();
	locks();
	scheduler();
	identity();
	vectors_and_opens();
	barriers_and_splices();
	CHECK(rmdir(dir) == 0);
	puts("EXIT-SUCCESS");
	return 0;
}
