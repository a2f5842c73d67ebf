/* RLIMIT_FSIZE set by the program: a write to a file stops at the limit,
 * the next one fails with EFBIG and SIGXFSZ (ignored, then handled), for
 * write, pwrite, writev and an O_APPEND descriptor; a pipe has no limit. */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include "warptest.h"

static volatile int xfsz;
static void on_xfsz(int sig)
{
	(void)sig;
	xfsz++;
}

int main(int argc, char **argv)
{
	CHECK(argc > 1);
	signal(SIGXFSZ, SIG_IGN);
	struct rlimit r = { 10, RLIM_INFINITY };
	CHECK(setrlimit(RLIMIT_FSIZE, &r) == 0);
	int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0);
	printf("write 15: %s\n", result_text(write(fd, "0123456789abcde", 15)));
	printf("write 5 more: %s\n", result_text(write(fd, "fghij", 5)));
	printf("pwrite 5 at 8: %s\n", result_text(pwrite(fd, "XYZUV", 5, 8)));
	struct iovec v[2] = { { "ab", 2 }, { "cd", 2 } };
	printf("writev at 10: %s\n", result_text(writev(fd, v, 2)));
	struct sigaction sa = { .sa_handler = on_xfsz };
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGXFSZ, &sa, NULL) == 0);
	ssize_t k = write(fd, "k", 1);
	printf("write with a handler: %s, handler ran %d\n", result_text(k), xfsz);
	close(fd);
	int ap = open(argv[1], O_WRONLY | O_APPEND);
	CHECK(ap >= 0);
	printf("append: %s\n", result_text(write(ap, "z", 1)));
	close(ap);
	int p[2];
	CHECK(pipe(p) == 0);
	printf("pipe, 20 bytes: %s\n", result_text(write(p[1], "01234567890123456789", 20)));
	return 0;
}
