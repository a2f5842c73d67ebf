/* Page permissions, one outcome per mode (argv[1]):
 *   ok           mmap RW, write, mprotect READ, read back, mprotect RW again,
 *                write, mprotect NONE, munmap; exit 0.
 *   write-ro     write to a page made PROT_READ: SIGSEGV, 139.
 *   read-none    read a page made PROT_NONE: SIGSEGV, 139.
 *   after-munmap read a page after munmap: SIGSEGV, 139.
 *   exec-nx      call into a PROT_READ|PROT_WRITE page: SIGSEGV, 139. */
#include <sys/mman.h>
#include "warptest.h"

#define PAGES 4
#define PG 4096

static unsigned sum(const volatile unsigned char *p, size_t n)
{
	unsigned s = 0;
	for (size_t i = 0; i < n; i += 64)
		s += p[i];
	return s;
}

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	const char *mode = argv[1];
	volatile unsigned char *p = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	for (size_t i = 0; i < PAGES * PG; i++)
		p[i] = (unsigned char)(i * 7);
	printf("written, sum %u\n", sum(p, PAGES * PG));

	CHECK(mprotect((void *)p, PAGES * PG, PROT_READ) == 0);
	printf("read-only, sum %u\n", sum(p, PAGES * PG));
	fflush(stdout);
	if (!strcmp(mode, "write-ro")) {
		p[PG + 5] = 1;
		puts("UNREACHABLE");
		return 2;
	}

	CHECK(mprotect((void *)(p + PG), PG, PROT_READ | PROT_WRITE) == 0);
	p[PG + 5] = 99;
	printf("second page writable again, byte %u\n", p[PG + 5]);

	CHECK(mprotect((void *)(p + 2 * PG), PG, PROT_NONE) == 0);
	printf("third page PROT_NONE, first page sum %u\n", sum(p, PG));
	fflush(stdout);
	if (!strcmp(mode, "read-none")) {
		printf("UNREACHABLE %u\n", p[2 * PG + 1]);
		return 2;
	}

	if (!strcmp(mode, "exec-nx")) {
		/* 0xc3 is ret: it would run if the page were executable. */
		volatile unsigned char *code = p + PG;
		code[0] = 0xc3;
		void (*fn)(void) = (void (*)(void))(uintptr_t)code;
		fn();
		puts("UNREACHABLE");
		return 2;
	}

	CHECK(munmap((void *)p, PAGES * PG) == 0);
	puts("unmapped");
	fflush(stdout);
	if (!strcmp(mode, "after-munmap")) {
		printf("UNREACHABLE %u\n", p[0]);
		return 2;
	}
	CHECK(!strcmp(mode, "ok"));
	puts("EXIT-SUCCESS");
	return 0;
}
