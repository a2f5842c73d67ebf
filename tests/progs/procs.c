/* New processes: fork, vfork, posix_spawn, execve in a child, wait4 and
 * waitid, exit statuses and fatal signals as a parent sees them, a zombie
 * reaped late, getpid/getppid agreeing with fork's results, children
 * writing to a shared pipe. Prints no pids: only what it checked. */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include "warptest.h"

extern char **environ;

static int failures;

static void check(int ok, const char *what)
{
	printf("%s: %s\n", what, ok ? "ok" : "FAILED");
	if (!ok)
		failures++;
}

/* The child end of "exec": run by this program's own image. */
static int as_child(char **argv)
{
	printf("exec'd child says %s\n", argv[2]);
	fflush(stdout);
	return atoi(argv[2]);
}

static int status_of(pid_t pid)
{
	int st = -1;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return st;
}

int main(int argc, char **argv)
{
	if (argc > 2 && strcmp(argv[1], "child") == 0)
		return as_child(argv);
	setvbuf(stdout, NULL, _IONBF, 0);
	pid_t me = getpid();

	/* Twenty children write to one pipe; the parent reads to EOF. */
	int p[2];
	if (pipe(p) != 0)
		return 2;
	pid_t kids[20];
	for (int i = 0; i < 20; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			close(p[0]);
			char line[32];
			int n = snprintf(line, sizeof line, "child %02d %s\n", i, getppid() == me ? "ppid" : "orphan");
			if (write(p[1], line, n) != n)
				_exit(100);
			_exit(i);
		}
		if (kids[i] < 0)
			return 3;
	}
	close(p[1]);
	char buf[4096];
	size_t got = 0;
	ssize_t n;
	while ((n = read(p[0], buf + got, sizeof buf - got)) > 0)
		got += n;
	close(p[0]);
	int lines = 0, ppid_ok = 0;
	for (size_t i = 0; i < got; i++)
		lines += buf[i] == '\n';
	for (char *s = buf; (s = strstr(s, " ppid\n")) != NULL; s++)
		ppid_ok++;
	printf("pipe: %d lines, %d saw their parent\n", lines, ppid_ok);
	int statuses = 0;
	for (int i = 19; i >= 0; i--) {
		int st = status_of(kids[i]);
		statuses += WIFEXITED(st) && WEXITSTATUS(st) == i;
	}
	check(statuses == 20, "twenty exit statuses in reverse order");
	check(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD, "no child left: ECHILD");

	/* Deaths by signal, as a shell sees them (no core dump). */
	pid_t k = fork();
	if (k == 0) {
		raise(SIGKILL);
		_exit(1);
	}
	int st = status_of(k);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "a child killed by SIGKILL");
	k = fork();
	if (k == 0) {
		volatile int *null = NULL;
		struct rlimit none = {0, 0};
		setrlimit(RLIMIT_CORE, &none);
		return *null;
	}
	st = status_of(k);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV && !WCOREDUMP(st), "a child killed by SIGSEGV");
	int go[2];
	if (pipe(go) != 0)
		return 4;
	k = fork();
	if (k == 0) {
		close(go[1]);
		char c;
		read(go[0], &c, 1); /* until the parent has sent SIGTERM */
		pause();
		_exit(0);
	}
	close(go[0]);
	check(kill(k, SIGTERM) == 0, "kill of a child");
	close(go[1]);
	st = status_of(k);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "it died of SIGTERM");

	/* SIGKILL from the parent, to a child waiting in a call and to one
	 * computing. */
	int hold[2];
	if (pipe(hold) != 0)
		return 5;
	struct timespec ms50 = {0, 50000000};
	k = fork();
	if (k == 0) {
		close(hold[1]);
		char c;
		read(hold[0], &c, 1);
		_exit(0);
	}
	close(hold[0]);
	nanosleep(&ms50, NULL);
	check(kill(k, SIGKILL) == 0, "SIGKILL to a waiting child");
	st = status_of(k);
	close(hold[1]);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "it died of SIGKILL");
	k = fork();
	if (k == 0) {
		volatile unsigned long spin = 0;
		for (;;)
			spin++;
	}
	nanosleep(&ms50, NULL);
	kill(k, SIGKILL);
	st = status_of(k);
	check(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "a computing child killed by SIGKILL");

	/* A zombie stays until it is reaped: waitid WNOWAIT sees it, twice. */
	k = fork();
	if (k == 0)
		_exit(42);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	int w1 = waitid(P_PID, k, &si, WEXITED | WNOWAIT);
	check(w1 == 0 && si.si_pid == k && si.si_code == CLD_EXITED && si.si_status == 42, "waitid WNOWAIT");
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)k);
	int fd = open(path, O_RDONLY);
	char stat[256] = {0};
	if (fd >= 0) {
		read(fd, stat, sizeof stat - 1);
		close(fd);
	}
	char *state = strrchr(stat, ')');
	check(state && state[1] == ' ' && state[2] == 'Z', "the zombie in /proc");
	st = status_of(k);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 42, "reaped late");

	/* A child executes this program again, with other arguments. */
	k = fork();
	if (k == 0) {
		char *args[] = {argv[0], "child", "5", NULL};
		execve("/proc/self/exe", args, environ);
		_exit(127);
	}
	st = status_of(k);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 5, "fork and exec");
	k = vfork();
	if (k == 0) {
		char *args[] = {argv[0], "child", "6", NULL};
		execve("/proc/self/exe", args, environ);
		_exit(127);
	}
	st = status_of(k);
	check(WIFEXITED(st) && WEXITSTATUS(st) == 6, "vfork and exec");
	char *args[] = {argv[0], "child", "9", NULL};
	pid_t s;
	int r = posix_spawn(&s, "/proc/self/exe", NULL, NULL, args, environ);
	st = r == 0 ? status_of(s) : -1;
	check(WIFEXITED(st) && WEXITSTATUS(st) == 9, "posix_spawn");
	check(getpid() == me, "getpid unchanged");

	/* A subreaper adopts its orphaned grandchild, which wait() then sees. */
	int on = -1;
	check(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 && prctl(PR_GET_CHILD_SUBREAPER, &on) == 0 && on == 1,
	      "PR_SET_CHILD_SUBREAPER");
	int told[2];
	if (pipe(told) != 0)
		return 6;
	k = fork();
	if (k == 0) {
		if (fork() == 0) {
			char c;
			close(told[1]);
			read(told[0], &c, 1); /* until its parent has exited */
			_exit(getppid() == me ? 3 : 4);
		}
		_exit(0);
	}
	close(told[0]);
	st = status_of(k);
	close(told[1]);
	int gst = -1;
	pid_t g = wait(&gst);
	check(WIFEXITED(st) && g > 0 && g != k && WIFEXITED(gst) && WEXITSTATUS(gst) == 3, "the orphan reaped by the subreaper");

	/* A pidfd: a signal through it, and waitid on it. */
	k = fork();
	if (k == 0) {
		pause();
		_exit(0);
	}
	int pfd = (int)syscall(SYS_pidfd_open, k, 0);
	check(pfd >= 0 && syscall(SYS_pidfd_send_signal, pfd, SIGTERM, NULL, 0) == 0, "pidfd_send_signal");
	memset(&si, 0, sizeof si);
	check(waitid(P_PIDFD, pfd, &si, WEXITED) == 0 && si.si_pid == k && si.si_code == CLD_KILLED && si.si_status == SIGTERM,
	      "waitid on the pidfd");
	puts(failures ? "EXIT-FAILURE" : "EXIT-SUCCESS");
	return failures != 0;
}
