/* Port I/O from user code: Linux gives a user program none, so each of
 * these is a general-protection fault, SIGSEGV with si_code SI_KERNEL,
 * which a handler catches; the handler sees the faulting instruction. Port
 * 0x10 is the one warpd's own syscall trampoline uses. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>
#include "warptest.h"

static sigjmp_buf jump;
static volatile int got, code;
static volatile unsigned long fault_rip;

static void on_segv(int sig, siginfo_t *info, void *ucv)
{
	ucontext_t *uc = ucv;
	got = sig;
	code = info->si_code;
	fault_rip = (unsigned long)uc->uc_mcontext.gregs[REG_RIP];
	siglongjmp(jump, 1);
}

extern char at_out_imm[], at_out_imm16[], at_in_imm[], at_out_dx[], at_out_80[];

static void run(int which)
{
	switch (which) {
	case 0: __asm__ volatile(".globl at_out_imm\nat_out_imm:\n\tout %%al, $0x10" ::: "memory"); break;
	case 1: __asm__ volatile(".globl at_out_imm16\nat_out_imm16:\n\tout %%ax, $0x10" ::: "memory"); break;
	case 2: __asm__ volatile(".globl at_in_imm\nat_in_imm:\n\tin $0x10, %%al" ::: "eax", "memory"); break;
	case 3: __asm__ volatile("mov $0x10, %%edx\n.globl at_out_dx\nat_out_dx:\n\tout %%al, %%dx" ::: "edx", "memory"); break;
	case 4: __asm__ volatile(".globl at_out_80\nat_out_80:\n\tout %%al, $0x80" ::: "memory"); break;
	}
}

int main(void)
{
	static const char *what[] = {"out %al, $0x10", "out %ax, $0x10", "in $0x10, %al", "out %al, %dx (0x10)", "out %al, $0x80"};
	char *where[] = {at_out_imm, at_out_imm16, at_in_imm, at_out_dx, at_out_80};
	struct sigaction sa = {0};
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	for (int i = 0; i < 5; i++) {
		got = 0;
		if (sigsetjmp(jump, 1) == 0) {
			run(i);
			printf("%s: no signal\n", what[i]);
		} else {
			printf("%s: %s, si_code %#x, at the instruction %s\n", what[i], got == SIGSEGV ? "SIGSEGV" : "?",
			       code, fault_rip == (unsigned long)where[i] ? "yes" : "NO");
		}
	}
	puts("EXIT-SUCCESS");
	return 0;
}
