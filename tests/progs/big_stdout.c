/* Writes 16 MiB of deterministic bytes to stdout in writes of varying
 * sizes; the test compares every byte. */
#include "warptest.h"

#define TOTAL (16u * 1024 * 1024)

int main(void)
{
	static unsigned char buf[1 << 16];
	uint32_t x = 12345;
	size_t sizes[] = {65536, 1, 4095, 30000, 65536, 512};
	size_t done = 0;
	for (unsigned i = 0; done < TOTAL; i++) {
		size_t n = sizes[i % 6];
		if (n > TOTAL - done)
			n = TOTAL - done;
		for (size_t j = 0; j < n; j++) {
			x = x * 1103515245u + 12345u;
			buf[j] = (unsigned char)(x >> 16);
		}
		write_all(1, buf, n);
		done += n;
	}
	return 0;
}
