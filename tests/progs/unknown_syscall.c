/* A syscall number Linux does not have (1000) fails with ENOSYS; the
 * program carries on. */
#include <sys/syscall.h>
#include "warptest.h"

int main(void)
{
	errno = 0;
	long r = syscall(1000, 1, 2, 3);
	printf("syscall(1000) = %ld %s\n", r, errname(errno));
	errno = 0;
	r = syscall(100000);
	printf("syscall(100000) = %ld %s\n", r, errname(errno));
	puts("still running");
	puts("EXIT-SUCCESS");
	return 0;
}
