/* rt_sigreturn with a forged frame whose saved rip is not canonical: the
 * return faults, and Linux kills the program with SIGSEGV (139). warpd must
 * do the same, not fail itself. */
#include <signal.h>
#include <sys/syscall.h>
#include "warptest.h"

int main(void)
{
	static unsigned long frame[128];
	/* ucontext at frame+8: rip is the 17th word of the sigcontext, which
	 * starts 40 bytes into the ucontext. */
	unsigned long *uc = frame + 1;
	unsigned long *mc = uc + 5;
	mc[15] = (unsigned long)&frame[100];      /* rsp */
	mc[16] = 0x8000000000001000ul;            /* rip: non-canonical */
	mc[17] = 0x202;                           /* eflags */
	puts("about to return from a forged signal frame");
	fflush(stdout);
	__asm__ volatile("mov %0, %%rsp\n\tmov $15, %%eax\n\tsyscall" : : "r"(frame + 1) : "memory", "rax");
	puts("not reached");
	return 0;
}
