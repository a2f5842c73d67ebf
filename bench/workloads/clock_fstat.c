/* N calls of clock_gettime(CLOCK_MONOTONIC) through glibc (natively the
 * vDSO answers it without entering the kernel; recorded it is a syscall)
 * or of fstat: calls the exitless path serves.
 *   clock_fstat clock|fstat N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[2]), ok = 0;
	int clock = strcmp(argv[1], "clock") == 0;
	struct timespec t;
	struct stat st;
	for (long i = 0; i < n; i++)
		ok += clock ? clock_gettime(CLOCK_MONOTONIC, &t) == 0 : fstat(0, &st) == 0;
	printf("%ld calls\n", ok);
	return ok == n ? 0 : 1;
}
