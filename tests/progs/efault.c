/* read() and write() with buffers the program may not use: a tiny address,
 * a kernel address, a non-canonical address, a read-only page (read into it)
 * and a PROT_NONE page (write from it) all give EFAULT; writing from a
 * read-only page works. The program carries on and exits 0. */
#include <fcntl.h>
#include <sys/mman.h>
#include "warptest.h"

static void show(const char *what, ssize_t r)
{
	if (r < 0)
		printf("%s: %s\n", what, errname(errno));
	else
		printf("%s: %zd\n", what, r);
}

int main(void)
{
	int zero = open("/dev/zero", O_RDONLY);
	CHECK(zero >= 0);
	int p[2];
	CHECK(pipe(p) == 0);
	write_all(p[1], "0123456789", 10);

	void *const bad[] = {
		(void *)1,
		(void *)(uintptr_t)0xffffffff81000000ull, /* kernel half */
		(void *)(uintptr_t)0x0000800000000000ull, /* first non-canonical */
	};
	const char *names[] = {"(void*)1", "kernel address", "non-canonical address"};
	for (int i = 0; i < 3; i++) {
		char what[96];
		errno = 0;
		snprintf(what, sizeof what, "read /dev/zero into %s", names[i]);
		show(what, read(zero, bad[i], 16));
		errno = 0;
		snprintf(what, sizeof what, "read pipe into %s", names[i]);
		show(what, read(p[0], bad[i], 4));
		errno = 0;
		snprintf(what, sizeof what, "write pipe from %s", names[i]);
		show(what, write(p[1], bad[i], 4));
	}

	/* Nothing was consumed from the pipe by the failed reads. */
	char got[16] = {0};
	show("read pipe after faults", read(p[0], got, sizeof got - 1));
	printf("pipe data [%s]\n", got);

	unsigned char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(ro != MAP_FAILED);
	errno = 0;
	show("read /dev/zero into PROT_READ page", read(zero, ro, 16));
	show("write pipe from PROT_READ page", write(p[1], ro, 8));
	CHECK(read(p[0], got, 8) == 8);
	printf("bytes from PROT_READ page: %d %d\n", got[0], got[7]);

	unsigned char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(none != MAP_FAILED);
	errno = 0;
	show("write pipe from PROT_NONE page", write(p[1], none, 8));
	errno = 0;
	show("read /dev/zero into PROT_NONE page", read(zero, none, 8));

	/* After unmapping, the same range faults too. */
	unsigned char *gone = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(gone != MAP_FAILED);
	show("read /dev/zero into mapped page", read(zero, gone, 16));
	CHECK(munmap(gone, 4096) == 0);
	errno = 0;
	show("read /dev/zero into unmapped page", read(zero, gone, 16));

	puts("EXIT-SUCCESS");
	return 0;
}
