/* signalfd: a non-blocking read with nothing pending (EAGAIN), signals
 * from raise, sigqueue and a timer read back with their siginfo, the mask
 * changed on an existing descriptor, two signals in one read, a blocking
 * read in a thread ended by a signal the main thread sends, and EBADF
 * after close. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include "warptest.h"

static const char *code_name(int code)
{
	switch (code) {
	case SI_USER: return "SI_USER";
	case SI_TKILL: return "SI_TKILL";
	case SI_QUEUE: return "SI_QUEUE";
	case SI_TIMER: return "SI_TIMER";
	default: return "?";
	}
}

static int blocking_fd;

static void *reader(void *arg)
{
	(void)arg;
	struct signalfd_siginfo si;
	ssize_t n = read(blocking_fd, &si, sizeof si);
	printf("blocking read in a thread: %zd bytes, %s\n", n, si.ssi_signo == SIGUSR1 ? "SIGUSR1" : "?");
	return NULL;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);

	sigset_t one;
	sigemptyset(&one);
	sigaddset(&one, SIGUSR1);
	int fd = signalfd(-1, &one, SFD_NONBLOCK | SFD_CLOEXEC);
	CHECK(fd >= 0);
	struct signalfd_siginfo si[2];
	errno = 0;
	printf("nothing pending: %s\n", read(fd, si, sizeof si[0]) < 0 ? errname(errno) : "a signal");
	errno = 0;
	printf("a short buffer: %s\n", read(fd, si, 10) < 0 ? errname(errno) : "read");

	CHECK(raise(SIGUSR1) == 0);
	ssize_t n = read(fd, si, sizeof si[0]);
	printf("raise: %zd bytes, %s, %s, from this pid %s\n", n, si[0].ssi_signo == SIGUSR1 ? "SIGUSR1" : "?",
	       code_name(si[0].ssi_code), si[0].ssi_pid == (uint32_t)getpid() ? "yes" : "no");

	CHECK(signalfd(fd, &set, 0) == fd);
	union sigval v = { .sival_int = 77 };
	CHECK(sigqueue(getpid(), SIGUSR2, v) == 0);
	n = read(fd, si, sizeof si[0]);
	printf("sigqueue: %zd bytes, %s, %s, value %d\n", n, si[0].ssi_signo == SIGUSR2 ? "SIGUSR2" : "?",
	       code_name(si[0].ssi_code), si[0].ssi_int);

	CHECK(kill(getpid(), SIGUSR1) == 0);
	CHECK(kill(getpid(), SIGUSR2) == 0);
	n = read(fd, si, sizeof si);
	printf("two pending: %zd bytes, %s then %s\n", n, si[0].ssi_signo == SIGUSR1 ? "SIGUSR1" : "?",
	       si[1].ssi_signo == SIGUSR2 ? "SIGUSR2" : "?");

	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 };
	ev.sigev_value.sival_int = 5;
	timer_t t;
	CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
	struct itimerspec its = { .it_value = { 0, 10 * 1000 * 1000 } };
	CHECK(timer_settime(t, 0, &its, NULL) == 0);
	int flags = fcntl(fd, F_GETFL);
	CHECK(fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0);
	n = read(fd, si, sizeof si[0]);
	printf("timer, blocking read: %zd bytes, %s, %s, value %d\n", n, si[0].ssi_signo == SIGUSR2 ? "SIGUSR2" : "?",
	       code_name(si[0].ssi_code), si[0].ssi_int);
	CHECK(timer_delete(t) == 0);

	blocking_fd = signalfd(-1, &one, 0);
	CHECK(blocking_fd >= 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, reader, NULL) == 0);
	struct timespec nap = { 0, 50 * 1000 * 1000 };
	CHECK(nanosleep(&nap, NULL) == 0);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	CHECK(pthread_join(th, NULL) == 0);

	/* poll and epoll see a pending signal of the mask. */
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	printf("poll, nothing pending: %d\n", poll(&pfd, 1, 0));
	CHECK(kill(getpid(), SIGUSR2) == 0);
	int ready = poll(&pfd, 1, 1000);
	printf("poll, SIGUSR2 pending: %d, %s\n", ready, pfd.revents & POLLIN ? "POLLIN" : "-");
	int ep = epoll_create1(0);
	CHECK(ep >= 0);
	struct epoll_event e = { .events = EPOLLIN, .data.fd = fd };
	CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) == 0);
	struct epoll_event got;
	printf("epoll: %d ready\n", epoll_wait(ep, &got, 1, 1000));
	n = read(fd, si, sizeof si[0]);
	printf("then read: %zd bytes, %s; poll now %d\n", n, si[0].ssi_signo == SIGUSR2 ? "SIGUSR2" : "?",
	       poll(&pfd, 1, 0));
	close(ep);

	int d = dup(fd);
	CHECK(d >= 0);
	CHECK(kill(getpid(), SIGUSR1) == 0);
	n = read(d, si, sizeof si[0]);
	printf("dup of a signalfd: %zd bytes, %s\n", n, si[0].ssi_signo == SIGUSR1 ? "SIGUSR1" : "?");
	close(d);

	CHECK(close(fd) == 0);
	errno = 0;
	printf("after close: %s\n", read(fd, si, sizeof si[0]) < 0 ? errname(errno) : "read");
	return 0;
}
