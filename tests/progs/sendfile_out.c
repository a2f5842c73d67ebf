/* sendfile to stdout from a file, with an offset and from the file's
 * position: the bytes come from the file, not from the program's memory,
 * so a replay has to print them from the trace. */
#include <fcntl.h>
#include <sys/sendfile.h>
#include "warptest.h"

int main(int argc, char **argv)
{
	CHECK(argc > 1);
	int fd = open(argv[1], O_RDONLY);
	CHECK(fd >= 0);
	fflush(stdout);
	off_t off = 6;
	CHECK(sendfile(1, fd, &off, 6) == 6);
	CHECK(off == 12);
	CHECK(write(1, "|", 1) == 1);
	CHECK(sendfile(1, fd, NULL, 5) == 5);
	CHECK(lseek(fd, 0, SEEK_CUR) == 5);
	CHECK(write(1, "\n", 1) == 1);
	return 0;
}
