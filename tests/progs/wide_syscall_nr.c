/* Linux x86_64 selects a syscall by the low 32 bits of rax: syscall(-1)
 * is number 0xffffffff (none: ENOSYS), 2^32 + 39 is getpid, and the upper
 * half is ignored for a call with arguments too. */
#include <sys/syscall.h>
#include "warptest.h"

int main(void)
{
	errno = 0;
	long r = syscall(-1L);
	printf("syscall(-1) = %ld %s\n", r, errname(errno));
	errno = 0;
	r = syscall(-1L, 1, 2, 3);
	printf("syscall(-1, 1, 2, 3) = %ld %s\n", r, errname(errno));
	long pid = syscall((1L << 32) + SYS_getpid);
	printf("syscall(2^32 + getpid) is getpid: %s\n", pid == getpid() ? "yes" : "NO");
	pid = syscall((long)0xffffffff00000000UL | SYS_getpid);
	printf("syscall(0xffffffff00000000 | getpid) is getpid: %s\n", pid == getpid() ? "yes" : "NO");
	static const char msg[] = "written through 2^40 + write\n";
	fflush(stdout);
	r = syscall((1L << 40) + SYS_write, 1, msg, sizeof msg - 1);
	printf("that write returned %ld\n", r);
	puts("EXIT-SUCCESS");
	return 0;
}
