/* A buffer longer than the memory mapped behind it: Linux copies up to the
 * first unmapped page and returns that much (EFAULT only when nothing was
 * copied), for read from a file and from /dev/zero, getrandom, write, and
 * readv and preadv whose later buffers are unmapped. */
#include <fcntl.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include "warptest.h"

int main(int argc, char **argv)
{
	CHECK(argc > 1);
	long page = sysconf(_SC_PAGESIZE);
	/* Low, at a fixed place: a length of 1 GiB from it stays in user space
	 * (Linux checks that first) natively, with whatever layout ASLR
	 * chose, and recorded, where the layout is Linux's without ASLR (the
	 * mappings' base just under the stack at the top of user space). */
	char *buf = mmap((void *)0x50000000, 2 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(buf == (void *)0x50000000);
	CHECK(munmap(buf + page, page) == 0);
	int fd = open(argv[1], O_RDONLY);
	CHECK(fd >= 0);
	printf("read a 3-byte file, length 1 GiB: %s\n", result_text(read(fd, buf, 1 << 30)));
	int z = open("/dev/zero", O_RDONLY);
	CHECK(z >= 0);
	printf("read /dev/zero, two pages asked, one mapped: %s\n", result_text(read(z, buf, 2 * page)));
	printf("getrandom, two pages asked: %s\n", result_text(getrandom(buf, 2 * page, 0)));
	int p[2];
	CHECK(pipe(p) == 0);
	printf("write to a pipe, two pages asked: %s\n", result_text(write(p[1], buf, 2 * page)));
	errno = 0;
	printf("read into unmapped memory: %s\n", result_text(read(z, buf + page, 16)));
	/* iovecs: 100 mapped bytes, then 50 of which the last 20 are unmapped,
	 * then an unmapped one. */
	struct iovec v[3] = { { buf, 100 }, { buf + page - 30, 50 }, { buf + page, 10 } };
	printf("readv of /dev/zero, its later buffers unmapped: %s\n", result_text(readv(z, v, 3)));
	printf("preadv of the file from 1: %s\n", result_text(preadv(fd, v + 1, 2, 1)));
	printf("readv, the first buffer unmapped: %s\n", result_text(readv(z, v + 2, 1)));
	struct iovec huge[2] = { { buf + page, 10 }, { buf, (size_t)-1 } };
	printf("readv, a later length too large: %s\n", result_text(readv(z, huge, 2)));
	return 0;
}
