/* Reads all of stdin with reads of varying sizes; prints the byte count and
 * a checksum. */
#include "warptest.h"

int main(void)
{
	static unsigned char buf[1 << 17];
	uint64_t h = FNV_INIT;
	unsigned long long total = 0;
	size_t sizes[] = {1, 4096, 65536, 100, 131072, 777};
	for (unsigned i = 0;; i++) {
		ssize_t n = read(0, buf, sizes[i % 6]);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n >= 0);
		if (n == 0)
			break;
		h = fnv1a(h, buf, (size_t)n);
		total += (unsigned long long)n;
	}
	printf("stdin: %llu bytes, checksum %016llx\n", total, (unsigned long long)h);
	puts("EXIT-SUCCESS");
	return 0;
}
