/* Maps 1 GiB of anonymous memory, touches one byte every 64 MiB, prints the
 * sum, unmaps. Only 16 pages are ever written: a guest memory model that
 * backs mappings eagerly will be slow or fail here. */
#include <sys/mman.h>
#include "warptest.h"

#define GIB ((size_t)1 << 30)
#define STEP ((size_t)64 << 20)

int main(void)
{
	unsigned char *p = mmap(NULL, GIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED);
	unsigned zero = 0;
	for (size_t off = 0; off < GIB; off += STEP)
		zero += p[off + 4096];
	printf("untouched sum %u\n", zero);
	for (size_t off = 0; off < GIB; off += STEP)
		p[off] = (unsigned char)(off / STEP + 1);
	p[GIB - 1] = 200;
	unsigned sum = 0;
	for (size_t off = 0; off < GIB; off += STEP)
		sum += p[off];
	sum += p[GIB - 1];
	printf("touched %zu pages, sum %u\n", GIB / STEP + 1, sum);
	CHECK(munmap(p, GIB) == 0);
	puts("EXIT-SUCCESS");
	return 0;
}
