/* Handlers for CPU faults: a NULL dereference caught by a SIGSEGV handler
 * (siginfo says SEGV_MAPERR at address 0) that siglongjmps out; a write to
 * a read-only page whose handler makes the page writable and returns, so
 * the write is retried and succeeds; a division by zero caught as SIGFPE. */
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include "warptest.h"

static sigjmp_buf jump;
static volatile int code, addr_is_null, fpe_code;
static char *page;

static void on_segv_jump(int sig, siginfo_t *info, void *uc)
{
	(void)sig; (void)uc;
	code = info->si_code;
	addr_is_null = info->si_addr == NULL;
	siglongjmp(jump, 1);
}

static void on_segv_fix(int sig, siginfo_t *info, void *uc)
{
	(void)sig; (void)uc;
	code = info->si_code;
	addr_is_null = (char *)info->si_addr == page + 100;
	mprotect(page, 4096, PROT_READ | PROT_WRITE);
}

static void on_fpe(int sig, siginfo_t *info, void *uc)
{
	(void)sig; (void)uc;
	fpe_code = info->si_code;
	siglongjmp(jump, 2);
}

int main(void)
{
	struct sigaction sa = {0};
	sa.sa_sigaction = on_segv_jump;
	sa.sa_flags = SA_SIGINFO;
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	if (sigsetjmp(jump, 1) == 0) {
		volatile int *p = NULL;
		(void)*p;
		puts("not reached");
	}
	printf("NULL: caught, si_code %d (SEGV_MAPERR %d), si_addr NULL %d\n", code, SEGV_MAPERR, addr_is_null);

	page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(page != MAP_FAILED);
	sa.sa_sigaction = on_segv_fix;
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	page[100] = 42;
	printf("read-only page: fixed by the handler, si_code %d (SEGV_ACCERR %d), si_addr right %d, value %d\n",
	       code, SEGV_ACCERR, addr_is_null, page[100]);

	sa.sa_sigaction = on_fpe;
	CHECK(sigaction(SIGFPE, &sa, NULL) == 0);
	volatile int zero = 0;
	if (sigsetjmp(jump, 1) == 0) {
		volatile int x = 10 / zero;
		(void)x;
		puts("not reached");
	}
	printf("division by zero: caught, si_code %d (FPE_INTDIV %d)\n", fpe_code, FPE_INTDIV);
	puts("EXIT-SUCCESS");
	return 0;
}
