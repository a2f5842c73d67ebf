/* Prints "ready" and then computes for ever without a syscall: only an
 * asynchronous signal (Ctrl-C) can stop it. */
#include <signal.h>
#include "warptest.h"

int main(void)
{
	CHECK(signal(SIGINT, SIG_DFL) != SIG_ERR);
	puts("ready");
	fflush(stdout);
	volatile uint64_t x = 1;
	for (;;)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
}
