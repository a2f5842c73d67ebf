/* Calls that write some of their outputs and then fail: getresuid with a
 * bad third pointer writes the real and effective uid, then EFAULT. What
 * it wrote is the program's input like any other (recorded, replayed). */
#include "warptest.h"
#include <sys/syscall.h>

int main(void)
{
	uid_t r = 12345, e = 12345;
	errno = 0;
	long ret = syscall(SYS_getresuid, &r, &e, (void *)8);
	printf("getresuid(&r, &e, bad) = %ld %s\n", ret, errname(errno));
	printf("r is the uid: %s, e is the euid: %s\n", r == getuid() ? "yes" : "NO", e == geteuid() ? "yes" : "NO");
	gid_t gr = 777, ge = 777;
	ret = syscall(SYS_getresgid, &gr, &ge, (void *)8);
	printf("getresgid(&r, &e, bad) = %ld, r %s, e %s\n", ret, gr == getgid() ? "yes" : "NO", ge == getegid() ? "yes" : "NO");
	puts("EXIT-SUCCESS");
	return 0;
}
