/* One thread blocked in the outside world never stops the others: a read
 * on an empty pipe while the other thread computes and then writes; accept
 * on a loopback socket while the other connects; poll and select with a
 * timeout and nanosleep while the other computes; a blocked read ended by a
 * signal (EINTR without SA_RESTART, restarted with it); a timed wait
 * beside a spinning thread; F_OFD_SETLKW while the other thread holds the
 * lock. Each would hang, or count no work done meanwhile, if a waiting
 * call held the only vCPU or a timeout were not noticed while one computes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <time.h>
#include "warptest.h"

static int fds[2];
static volatile int ready;
static volatile int done;
static volatile unsigned long spins;

/* Computes (no syscalls) until `done`, counting. */
static void spin_until_done(void)
{
	while (!done)
		spins++;
}

static void *reader(void *arg)
{
	(void)arg;
	char buf[32] = { 0 };
	ready = 1;
	ssize_t n = read(fds[0], buf, sizeof buf - 1);
	printf("reader got %zd bytes: %s\n", n, buf);
	return NULL;
}

static void pipe_read_while_computing(void)
{
	CHECK(pipe(fds) == 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, reader, NULL) == 0);
	while (!ready)
		;
	/* Compute a while (the reader is in read by now), then write. */
	volatile uint64_t h = FNV_INIT;
	for (int i = 0; i < 2000000; i++)
		h = fnv1a(h, &i, sizeof i);
	CHECK(write(fds[1], "after computing", 15) == 15);
	CHECK(pthread_join(t, NULL) == 0);
	close(fds[0]);
	close(fds[1]);
}


static void *acceptor(void *arg)
{
	int s = *(int *)arg;
	ready = 1;
	int c = accept(s, NULL, NULL);
	CHECK(c >= 0);
	char buf[32] = { 0 };
	ssize_t n = read(c, buf, sizeof buf - 1);
	printf("accepted, read %zd bytes: %s\n", n, buf);
	close(c);
	return NULL;
}

static void accept_while_connecting(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(s >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0);
	socklen_t len = sizeof a;
	CHECK(getsockname(s, (struct sockaddr *)&a, &len) == 0);
	CHECK(listen(s, 1) == 0);
	ready = 0;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, acceptor, &s) == 0);
	while (!ready)
		;
	/* Let it reach accept. */
	for (int i = 0; i < 20; i++)
		sched_yield();
	int c = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(c >= 0);
	CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
	CHECK(write(c, "over loopback", 13) == 13);
	CHECK(pthread_join(t, NULL) == 0);
	close(c);
	close(s);
}

static void *poller(void *arg)
{
	(void)arg;
	struct pollfd p = { .fd = fds[0], .events = POLLIN };
	int r = poll(&p, 1, 100);
	fd_set set;
	FD_ZERO(&set);
	FD_SET(fds[0], &set);
	struct timeval tv = { 0, 50 * 1000 };
	int s = select(fds[0] + 1, &set, NULL, NULL, &tv);
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	int z = nanosleep(&ts, NULL);
	printf("poll %d, select %d, nanosleep %d\n", r, s, z);
	done = 1;
	return NULL;
}

static void timeouts_while_computing(void)
{
	CHECK(pipe(fds) == 0);
	done = 0;
	spins = 0;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, poller, NULL) == 0);
	spin_until_done();
	CHECK(pthread_join(t, NULL) == 0);
	printf("the other thread computed meanwhile: %s\n", spins > 1000 ? "yes" : "no");
	close(fds[0]);
	close(fds[1]);
}

static volatile int handled;
static void on_usr1(int sig)
{
	(void)sig;
	handled++;
}

static void *interrupted_reader(void *arg)
{
	(void)arg;
	char buf[32] = { 0 };
	ready = 1;
	ssize_t n = read(fds[0], buf, sizeof buf - 1);
	if (n < 0)
		printf("read: %s, handler ran %d\n", errname(errno), handled);
	else
		printf("read %zd bytes after the handler ran %d: %s\n", n, handled, buf);
	return NULL;
}

static void signal_ends_a_blocked_read(int restart)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = restart ? SA_RESTART : 0 };
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	CHECK(pipe(fds) == 0);
	ready = 0;
	handled = 0;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, interrupted_reader, NULL) == 0);
	while (!ready)
		;
	/* Long enough for it to be in read. */
	struct timespec ts = { 0, 100 * 1000 * 1000 };
	CHECK(nanosleep(&ts, NULL) == 0);
	CHECK(pthread_kill(t, SIGUSR1) == 0);
	if (restart) {
		while (!handled)
			;
		CHECK(nanosleep(&ts, NULL) == 0);
		CHECK(write(fds[1], "restarted", 9) == 9);
	}
	CHECK(pthread_join(t, NULL) == 0);
	close(fds[0]);
	close(fds[1]);
}

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static volatile int timed_out;

static void *timed_waiter(void *arg)
{
	(void)arg;
	struct timespec until = ms_from_now(CLOCK_REALTIME, 30);
	CHECK(pthread_mutex_lock(&m) == 0);
	int r = pthread_cond_timedwait(&never, &m, &until);
	CHECK(pthread_mutex_unlock(&m) == 0);
	timed_out = r == ETIMEDOUT ? 1 : 2;
	return NULL;
}

/* The other thread spins until the timed wait has ended: on one vCPU that
 * ends only if the timeout is noticed while this one computes. */
static void timeout_while_another_spins(void)
{
	pthread_t t;
	CHECK(pthread_create(&t, NULL, timed_waiter, NULL) == 0);
	while (!timed_out)
		;
	CHECK(pthread_join(t, NULL) == 0);
	printf("a timed wait beside a spinning thread: %s\n", timed_out == 1 ? "ETIMEDOUT" : "?");
}

static int ofd_path_fd;
static char ofd_path[64];
static volatile int locked_by_main;

static void *ofd_waiter(void *arg)
{
	(void)arg;
	int fd = open(ofd_path, O_RDWR);
	CHECK(fd >= 0);
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	while (!locked_by_main)
		;
	/* Waits until the main thread's lock (another open file) is gone. */
	CHECK(fcntl(fd, F_OFD_SETLKW, &l) == 0);
	printf("F_OFD_SETLKW: got the lock once the other thread let go\n");
	close(fd);
	return NULL;
}

/* An open-file-description lock waited for in one thread while the other
 * holds it, computes, and lets it go. */
static void record_lock_wait(void)
{
	strcpy(ofd_path, "/tmp/warp-ofd-XXXXXX");
	ofd_path_fd = mkstemp(ofd_path);
	CHECK(ofd_path_fd >= 0);
	struct flock l = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	CHECK(fcntl(ofd_path_fd, F_OFD_SETLK, &l) == 0);
	pthread_t t;
	CHECK(pthread_create(&t, NULL, ofd_waiter, NULL) == 0);
	locked_by_main = 1;
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	CHECK(nanosleep(&ts, NULL) == 0);
	l.l_type = F_UNLCK;
	CHECK(fcntl(ofd_path_fd, F_OFD_SETLK, &l) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	close(ofd_path_fd);
	unlink(ofd_path);
}

static volatile int ppoll_handled;
static void on_usr2(int sig)
{
	(void)sig;
	ppoll_handled++;
}

static void *ppoll_waiter(void *arg)
{
	(void)arg;
	sigset_t none;
	sigemptyset(&none);
	struct pollfd p = { .fd = fds[0], .events = POLLIN };
	struct timespec ts = { 5, 0 };
	ready = 1;
	int r = ppoll(&p, 1, &ts, &none);
	int e = errno;
	sigset_t now;
	CHECK(pthread_sigmask(SIG_BLOCK, NULL, &now) == 0);
	printf("ppoll with a mask that lets SIGUSR2 in: %s, handler ran %d, blocked again %d\n", r < 0 ? errname(e) : "no EINTR",
	       ppoll_handled, sigismember(&now, SIGUSR2));
	return NULL;
}

/* ppoll waits with the mask it is given: a signal blocked otherwise ends it
 * (EINTR), its handler runs, and the thread's mask comes back. */
static void ppoll_with_a_mask(void)
{
	struct sigaction sa = { .sa_handler = on_usr2 };
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	CHECK(pthread_sigmask(SIG_BLOCK, &usr2, NULL) == 0);
	CHECK(pipe(fds) == 0);
	ready = 0;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, ppoll_waiter, NULL) == 0);
	while (!ready)
		;
	struct timespec nap = { 0, 100 * 1000 * 1000 };
	CHECK(nanosleep(&nap, NULL) == 0);
	CHECK(pthread_kill(t, SIGUSR2) == 0);
	CHECK(pthread_join(t, NULL) == 0);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	pipe_read_while_computing();
	accept_while_connecting();
	timeouts_while_computing();
	signal_ends_a_blocked_read(0);
	signal_ends_a_blocked_read(1);
	timeout_while_another_spins();
	record_lock_wait();
	ppoll_with_a_mask();
	return 0;
}
