/* Signal handlers: raise() runs the handler with siginfo, the signal is
 * blocked while it runs, the FPU state survives it, alarm()+pause() wakes
 * with EINTR after the handler, siglongjmp out of a handler works, and a
 * handler installed for SIGINT catches Ctrl-C ("wait" mode: prints ready,
 * blocks in read, reports the signal and exits 0; "spin" mode: the same
 * while computing, the handler only setting a flag the loop watches). */
#include <setjmp.h>
#include <signal.h>
#include "warptest.h"

static volatile sig_atomic_t got, blocked_inside, code;
static sigjmp_buf jump;

static void on_usr1(int sig, siginfo_t *info, void *uc)
{
	(void)uc;
	got = sig;
	code = info->si_signo;
	sigset_t now;
	sigprocmask(SIG_BLOCK, NULL, &now);
	blocked_inside = sigismember(&now, SIGUSR1);
	volatile double x = 1.0;
	for (int i = 0; i < 10; i++)
		x = x * 3.5 + 0.25; /* clobber the FPU registers */
}

static void on_alarm(int sig) { got = sig; }
static volatile sig_atomic_t interrupted;
static void on_int_flag(int sig) { interrupted = sig; }
static void on_usr2(int sig) { (void)sig; siglongjmp(jump, 7); }
static void on_int(int sig)
{
	static const char msg[] = "caught SIGINT\n";
	write(1, msg, sizeof msg - 1);
	(void)sig;
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "spin") == 0) {
		/* A handler that only sets a flag, and a loop that makes no
		 * syscall until the flag is set. */
		signal(SIGINT, on_int_flag);
		puts("ready");
		fflush(stdout);
		while (!interrupted)
			;
		printf("caught signal %d while computing\n", (int)interrupted);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "wait") == 0) {
		struct sigaction sa = {0};
		sa.sa_handler = on_int;
		CHECK(sigaction(SIGINT, &sa, NULL) == 0);
		puts("ready");
		fflush(stdout);
		char c;
		read(0, &c, 1);
		puts("read returned");
		return 1;
	}

	struct sigaction sa = {0};
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO;
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	volatile double keep = 2.0 / 3.0;
	CHECK(raise(SIGUSR1) == 0);
	printf("usr1: got %d, si_signo %d, blocked inside %d\n", (int)got, (int)code, (int)blocked_inside);
	printf("fpu kept: %d\n", keep == 2.0 / 3.0);
	sigset_t now;
	sigprocmask(SIG_BLOCK, NULL, &now);
	printf("unblocked after: %d\n", !sigismember(&now, SIGUSR1));

	got = 0;
	signal(SIGALRM, on_alarm);
	alarm(1);
	int r = pause();
	printf("pause: %d %s, got %d\n", r, errname(errno), (int)got);

	signal(SIGUSR2, on_usr2);
	int v = sigsetjmp(jump, 1);
	if (v == 0) {
		raise(SIGUSR2);
		puts("not reached");
	}
	printf("siglongjmp: %d\n", v);
	sigprocmask(SIG_BLOCK, NULL, &now);
	printf("usr2 unblocked after siglongjmp: %d\n", !sigismember(&now, SIGUSR2));
	puts("EXIT-SUCCESS");
	return 0;
}
