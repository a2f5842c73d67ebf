/* Copies argv[1] to argv[2] with 64 KiB read()/write() calls: bulk data
 * through the syscall path. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static char buf[64 * 1024];
	if (argc != 3)
		return 2;
	int in = open(argv[1], O_RDONLY);
	int out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0)
		return 1;
	long long total = 0;
	for (;;) {
		ssize_t n = read(in, buf, sizeof buf);
		if (n < 0)
			return 1;
		if (n == 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, n - off);
			if (w <= 0)
				return 1;
			off += w;
		}
		total += n;
	}
	if (close(out) != 0)
		return 1;
	printf("%lld bytes\n", total);
	return 0;
}
