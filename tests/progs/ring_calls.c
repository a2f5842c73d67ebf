/* The calls the exitless ring serves (read, write, lseek, pread64,
 * pwrite64) on a file, a pipe, /dev/zero and stdout, with the answers
 * Linux gives for bad descriptors, bad buffers, empty non-blocking pipes,
 * negative offsets and a pipe without a reader (EPIPE, SIGPIPE ignored
 * and caught). Prints results and checksums only: the same bytes natively
 * and recorded.
 *
 *   ring_calls FILE      the mix, on scratch file FILE
 *   ring_calls loop      prints "ready", then reads /dev/zero forever */
#include <fcntl.h>
#include <signal.h>
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
