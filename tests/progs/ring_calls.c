/* The calls the exitless ring serves (read, write, lseek, pread64,
 * pwrite64, fstat, getdents64, clock_gettime) on a file, a pipe, a
 * directory, /dev/zero and stdout, with the answers
 * Linux gives for bad descriptors, bad buffers, empty non-blocking pipes,
 * negative offsets and a pipe without a reader (EPIPE, SIGPIPE ignored
 * and caught). Prints results and checksums only: the same bytes natively
 * and recorded.
 *
 *   ring_calls FILE      the mix, on scratch file FILE
 *   ring_calls loop      prints "ready", then reads /dev/zero forever */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif
#include <sys/syscall.h>
#include "warptest.h"

static volatile sig_atomic_t pipes_caught;
static void on_pipe(int s) { (void)s; pipes_caught++; }

static void say(const char *what, long r)
{
	if (r < 0)
		printf("%s: -1 %s\n", what, errname(errno));
	else
		printf("%s: %ld\n", what, r);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int zero = open("/dev/zero", O_RDONLY);
	char c;
	if (strcmp(argv[1], "loop") == 0) {
		printf("ready\n");
		fflush(stdout);
		for (;;)
			read(zero, &c, 1);
	}
	long total = 0;
	for (int i = 0; i < 4000; i++)
		total += read(zero, &c, 1);
	printf("zero reads: %ld\n", total);

	int f = open(argv[1], O_CREAT | O_TRUNC | O_RDWR, 0600);
	uint64_t h = FNV_INIT;
	char line[64];
	for (int i = 0; i < 1000; i++) {
		int n = snprintf(line, sizeof line, "line %d of the ring test\n", i);
		if (write(f, line, n) != n)
			return 3;
	}
	say("lseek end", lseek(f, 0, SEEK_END));
	say("lseek start", lseek(f, 0, SEEK_SET));
	char buf[7000];
	long r, got = 0;
	while ((r = read(f, buf, 7)) > 0) {
		h = fnv1a(h, buf, r);
		got += r;
	}
	printf("read back %ld bytes, fnv %016llx\n", got, (unsigned long long)h);
	say("pwrite", pwrite(f, "RING", 4, 100));
	memset(buf, 0, sizeof buf);
	say("pread", pread(f, buf, 6000, 96));
	printf("pread fnv %016llx\n", (unsigned long long)fnv1a(FNV_INIT, buf, 6000));
	say("pread past the end", pread(f, buf, 10, 1 << 30));
	say("pread negative offset", syscall(SYS_pread64, f, buf, 10, -5L));
	say("lseek bad whence", lseek(f, 0, 7));
	say("read bad fd", read(999, buf, 1));
	say("read NULL", syscall(SYS_read, f, (void *)0, 10));
	say("read 0 bytes", read(f, buf, 0));
	say("write read-only fd", write(zero, "x", 1));
	say("read into the trampoline page", syscall(SYS_read, zero, (void *)0x7ffffffff800ull, 8));
	say("read 2 MiB", read(zero, malloc(2 << 20), 2 << 20));

	/* fstat, getdents64 and clock_gettime, as syscalls (glibc's
	 * clock_gettime would take the vDSO natively). */
	struct stat st;
	long same = 0, size = lseek(f, 0, SEEK_END);
	for (int i = 0; i < 500; i++) {
		if (syscall(SYS_fstat, f, &st) == 0 && st.st_size == size)
			same++;
	}
	printf("fstat: %ld of 500 saw the file's size, regular %d\n", same, S_ISREG(st.st_mode));
	same = 0;
	for (int i = 0; i < 500; i++) {
		/* glibc's fstat (newfstatat with AT_EMPTY_PATH since 2.33). */
		if (fstat(f, &st) == 0 && st.st_size == size)
			same++;
	}
	printf("glibc fstat: %ld of 500 saw the file's size\n", same);
	say("newfstatat of the path", syscall(SYS_newfstatat, AT_FDCWD, argv[1], &st, 0) == 0 && st.st_size == size);
	say("newfstatat, a path and AT_EMPTY_PATH", syscall(SYS_newfstatat, f, "x", &st, AT_EMPTY_PATH));
	say("newfstatat, empty, no AT_EMPTY_PATH", syscall(SYS_newfstatat, f, "", &st, 0));
	say("newfstatat, bad flags", syscall(SYS_newfstatat, f, "", &st, AT_EMPTY_PATH | 0x200));
	say("newfstatat, empty, bad fd", syscall(SYS_newfstatat, 999, "", &st, AT_EMPTY_PATH));
	say("fstat bad fd", syscall(SYS_fstat, 999, &st));
	say("fstat NULL", syscall(SYS_fstat, f, (void *)0));
	say("fstat into the trampoline page", syscall(SYS_fstat, f, (void *)0x7ffffffff800ull));
	char dirpath[4096];
	snprintf(dirpath, sizeof dirpath, "%s", argv[1]);
	char *slash = strrchr(dirpath, '/');
	if (slash)
		*slash = 0;
	int d = open(slash ? dirpath : ".", O_RDONLY | O_DIRECTORY);
	long entries = 0, found = 0, n;
	char dents[512];
	while ((n = syscall(SYS_getdents64, d, dents, sizeof dents)) > 0) {
		for (long at = 0; at < n;) {
			struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *e = (void *)(dents + at);
			entries++;
			found += slash && strcmp(e->name, slash + 1) == 0;
			at += e->reclen;
		}
	}
	printf("getdents64: %s, the file %s, %ld entries\n", n == 0 ? "to the end" : errname(errno), found ? "listed" : "missing", entries);
	say("getdents64 on a file", syscall(SYS_getdents64, f, dents, sizeof dents));
	lseek(d, 0, SEEK_SET);
	say("getdents64 too small", syscall(SYS_getdents64, d, dents, 4));
	close(d);
	struct timespec t0, t1;
	long rising = 0;
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 2000; i++) {
		syscall(SYS_clock_gettime, i % 2 ? CLOCK_MONOTONIC : CLOCK_MONOTONIC_COARSE, &t1);
		if (i % 2 && (t1.tv_sec > t0.tv_sec || (t1.tv_sec == t0.tv_sec && t1.tv_nsec >= t0.tv_nsec)))
			rising++;
		if (i % 2)
			t0 = t1;
	}
	printf("clock_gettime: %ld of 1000 monotonic readings did not go back\n", rising);
	say("clock_gettime REALTIME", syscall(SYS_clock_gettime, CLOCK_REALTIME, &t1));
	say("clock_gettime bad clock", syscall(SYS_clock_gettime, 99, &t1));
	say("clock_gettime NULL", syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void *)0));
	say("clock_gettime CPU time", syscall(SYS_clock_gettime, CLOCK_PROCESS_CPUTIME_ID, &t1));

	int p[2];
	if (pipe(p))
		return 4;
	long moved = 0;
	for (int i = 0; i < 500; i++) {
		memset(buf, 'a' + i % 26, 100);
		moved += write(p[1], buf, 100);
		moved += read(p[0], buf, 100);
		h = fnv1a(h, buf, 100);
	}
	printf("pipe moved %ld, fnv %016llx\n", moved, (unsigned long long)h);
	say("pipe lseek", lseek(p[0], 0, SEEK_CUR));
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	say("empty non-blocking pipe", read(p[0], buf, 10));
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	say("write without a reader (ignored)", write(p[1], "x", 1));
	signal(SIGPIPE, on_pipe);
	say("write without a reader (caught)", write(p[1], "x", 1));
	printf("SIGPIPE caught %d times\n", (int)pipes_caught);

	fflush(stdout);
	for (int i = 0; i < 200; i++) {
		int n = snprintf(line, sizeof line, "stdout line %d\n", i);
		write(1, line, n);
	}
	unlink(argv[1]);
	printf("done\n");
	return 0;
}
