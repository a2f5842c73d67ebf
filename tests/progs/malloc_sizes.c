/* malloc/free of many sizes from 1 byte to 256 MiB (small ones from the
 * heap via brk, large ones via mmap), writing every page, checksum printed. */
#include "warptest.h"

int main(void)
{
	uint64_t h = FNV_INIT;
	unsigned count = 0;
	for (size_t size = 1; size <= ((size_t)256 << 20); size *= 2) {
		size_t variants[3] = {size, size + size / 3, size > 2 ? size - 1 : size};
		for (int v = 0; v < 3; v++) {
			size_t n = variants[v];
			if (n > ((size_t)256 << 20))
				continue;
			unsigned char *p = malloc(n);
			CHECK(p != NULL);
			/* Touch every page and both ends. */
			for (size_t i = 0; i < n; i += 4096)
				p[i] = (unsigned char)(i / 4096 + n);
			p[n - 1] = (unsigned char)n;
			unsigned sum = 0;
			for (size_t i = 0; i < n; i += 4096)
				sum += p[i];
			sum += p[n - 1];
			h = fnv1a(h, &sum, sizeof sum);
			free(p);
			count++;
		}
	}
	/* Many live small blocks at once, freed in a different order. */
	enum { LIVE = 10000 };
	static unsigned char *live[LIVE];
	for (int i = 0; i < LIVE; i++) {
		size_t n = 1 + (size_t)(i * 37 % 3000);
		live[i] = malloc(n);
		CHECK(live[i] != NULL);
		memset(live[i], i & 0xff, n);
	}
	for (int i = 0; i < LIVE; i += 2)
		free(live[i]);
	unsigned sum = 0;
	for (int i = 1; i < LIVE; i += 2) {
		sum += live[i][0];
		free(live[i]);
	}
	h = fnv1a(h, &sum, sizeof sum);
	printf("%u allocations, checksum %016llx\n", count, (unsigned long long)h);
	puts("EXIT-SUCCESS");
	return 0;
}
