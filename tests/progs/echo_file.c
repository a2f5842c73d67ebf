/* Copies the file named by argv[1] to stdout, then prints EXIT-SUCCESS:
 * what it writes is what it read, so a changed read shows up at the write. */
#include <fcntl.h>
#include "warptest.h"

int main(int argc, char **argv)
{
	CHECK(argc == 2);
	int fd = open(argv[1], O_RDONLY);
	CHECK(fd >= 0);
	char buf[4096];
	ssize_t n;
	while ((n = read(fd, buf, sizeof buf)) > 0)
		write_all(1, buf, (size_t)n);
	CHECK(n == 0);
	close(fd);
	puts("EXIT-SUCCESS");
	return 0;
}
