/* 100000 one-byte reads of /dev/zero: the cost of a syscall round trip. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	int fd = open("/dev/zero", O_RDONLY);
	if (fd < 0)
		return 1;
	char c;
	long got = 0;
	for (long i = 0; i < n; i++)
		got += read(fd, &c, 1);
	printf("%ld bytes\n", got);
	return got == n ? 0 : 1;
}
