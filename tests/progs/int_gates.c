/* `int n` from user code as Linux answers it: `int $3` is a breakpoint
 * (SIGTRAP), any other vector's gate is closed to user mode, so #GP and
 * SIGSEGV (si_code SI_KERNEL), which a handler catches. */
#include <setjmp.h>
#include <signal.h>
#include "warptest.h"

static sigjmp_buf jump;
static volatile int got, code;

static void on_signal(int sig, siginfo_t *info, void *uc)
{
	(void)uc;
	got = sig;
	code = info->si_code;
	siglongjmp(jump, 1);
}

#define TRY(what, insn)                                                                   \
	do {                                                                              \
		got = 0;                                                                  \
		if (sigsetjmp(jump, 1) == 0) {                                            \
			__asm__ volatile(insn);                                           \
			puts(what ": no signal");                                         \
		} else {                                                                  \
			printf(what ": %s, si_code %#x\n", got == SIGSEGV ? "SIGSEGV" :   \
			       got == SIGTRAP ? "SIGTRAP" : got == SIGILL ? "SIGILL" : "?", \
			       code);                                                     \
		}                                                                         \
	} while (0)

int main(void)
{
	struct sigaction sa = {0};
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	CHECK(sigaction(SIGILL, &sa, NULL) == 0);
	CHECK(sigaction(SIGTRAP, &sa, NULL) == 0);
	TRY("int $0x10", "int $0x10");
	TRY("int $0x21", "int $0x21");
	TRY("int $0xff", "int $0xff");
	TRY("int3", "int3");
	puts("EXIT-SUCCESS");
	return 0;
}
