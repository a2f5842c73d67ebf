/* sendmsg and recvmsg: scattered and gathered iovecs, a descriptor passed
 * with SCM_RIGHTS, MSG_TRUNC in msg_flags for a datagram cut short, the
 * sender's address in msg_name on UDP, sendmmsg and recvmmsg with their
 * msg_len, and a thread blocked in recvmsg while the other computes and
 * then sends. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "warptest.h"

static int sv[2];

static void *blocked_receiver(void *arg)
{
	(void)arg;
	char buf[32] = { 0 };
	struct iovec v = { buf, sizeof buf - 1 };
	struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1 };
	ssize_t n = recvmsg(sv[0], &m, 0);
	printf("blocked recvmsg: %zd bytes: %s\n", n, buf);
	return NULL;
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	struct iovec out[2] = { { "hello ", 6 }, { "world", 5 } };
	struct msghdr m = { .msg_iov = out, .msg_iovlen = 2 };
	CHECK(sendmsg(sv[1], &m, 0) == 11);
	char a[4], b[16] = { 0 };
	struct iovec in[2] = { { a, sizeof a }, { b, sizeof b - 1 } };
	struct msghdr r = { .msg_iov = in, .msg_iovlen = 2 };
	ssize_t n = recvmsg(sv[0], &r, 0);
	printf("gathered and scattered: %zd bytes: %.4s|%s\n", n, a, b);

	/* A descriptor passed with SCM_RIGHTS. */
	int p[2];
	CHECK(pipe(p) == 0);
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof ctl);
	struct iovec one = { "x", 1 };
	struct msghdr s = { .msg_iov = &one, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&s);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &p[0], sizeof(int));
	CHECK(sendmsg(sv[1], &s, 0) == 1);
	char got;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} rctl;
	memset(&rctl, 0, sizeof rctl);
	struct iovec g = { &got, 1 };
	struct msghdr rr = { .msg_iov = &g, .msg_iovlen = 1, .msg_control = rctl.buf, .msg_controllen = sizeof rctl.buf };
	CHECK(recvmsg(sv[0], &rr, 0) == 1);
	struct cmsghdr *rc = CMSG_FIRSTHDR(&rr);
	int passed = -1;
	if (rc && rc->cmsg_type == SCM_RIGHTS)
		memcpy(&passed, CMSG_DATA(rc), sizeof passed);
	CHECK(write(p[1], "through it", 10) == 10);
	char via[16] = { 0 };
	printf("SCM_RIGHTS: controllen %s, read %zd bytes through the passed descriptor\n",
	       rr.msg_controllen == CMSG_SPACE(sizeof(int)) ? "right" : "wrong", read(passed, via, sizeof via - 1));

	/* A datagram cut short: MSG_TRUNC. */
	int dg[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) == 0);
	CHECK(send(dg[1], "0123456789", 10, 0) == 10);
	char small[4];
	struct iovec sm = { small, sizeof small };
	struct msghdr t = { .msg_iov = &sm, .msg_iovlen = 1 };
	n = recvmsg(dg[0], &t, 0);
	printf("datagram cut short: %zd bytes, MSG_TRUNC %s\n", n, t.msg_flags & MSG_TRUNC ? "set" : "not set");

	/* The sender's address on UDP. */
	int u = socket(AF_INET, SOCK_DGRAM, 0), v = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK(u >= 0 && v >= 0);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	CHECK(bind(u, (struct sockaddr *)&addr, sizeof addr) == 0);
	socklen_t len = sizeof addr;
	CHECK(getsockname(u, (struct sockaddr *)&addr, &len) == 0);
	CHECK(sendto(v, "udp", 3, 0, (struct sockaddr *)&addr, sizeof addr) == 3);
	struct sockaddr_in from;
	char ub[8] = { 0 };
	struct iovec uv = { ub, sizeof ub - 1 };
	struct msghdr um = { .msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &uv, .msg_iovlen = 1 };
	n = recvmsg(u, &um, 0);
	printf("UDP: %zd bytes %s from %s, namelen %u\n", n, ub, from.sin_family == AF_INET ? "AF_INET" : "?",
	       (unsigned)um.msg_namelen);

	/* sendmmsg and recvmmsg: three datagrams at once, msg_len each. */
	int mm[2];
	CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, mm) == 0);
	struct iovec sv3[3] = { { "one", 3 }, { "three", 5 }, { "fifteen bytes!!", 15 } };
	struct mmsghdr sm3[3];
	memset(sm3, 0, sizeof sm3);
	for (int i = 0; i < 3; i++) {
		sm3[i].msg_hdr.msg_iov = &sv3[i];
		sm3[i].msg_hdr.msg_iovlen = 1;
	}
	int sent = sendmmsg(mm[1], sm3, 3, 0);
	char rb[3][16];
	memset(rb, 0, sizeof rb);
	struct iovec rv3[3] = { { rb[0], 15 }, { rb[1], 15 }, { rb[2], 4 } };
	struct mmsghdr rm3[3];
	memset(rm3, 0, sizeof rm3);
	for (int i = 0; i < 3; i++) {
		rm3[i].msg_hdr.msg_iov = &rv3[i];
		rm3[i].msg_hdr.msg_iovlen = 1;
	}
	int got3 = recvmmsg(mm[0], rm3, 3, 0, NULL);
	printf("sendmmsg %d (lengths %u %u %u), recvmmsg %d: %s %s %s (%u %u %u, last %s)\n", sent, sm3[0].msg_len,
	       sm3[1].msg_len, sm3[2].msg_len, got3, rb[0], rb[1], rb[2], rm3[0].msg_len, rm3[1].msg_len, rm3[2].msg_len,
	       rm3[2].msg_hdr.msg_flags & MSG_TRUNC ? "cut short" : "whole");

	/* A thread blocked in recvmsg while this one computes, then sends. */
	pthread_t th;
	CHECK(pthread_create(&th, NULL, blocked_receiver, NULL) == 0);
	volatile uint64_t h = FNV_INIT;
	for (int i = 0; i < 1000000; i++)
		h = fnv1a(h, &i, sizeof i);
	struct iovec late = { "after computing", 15 };
	struct msghdr lm = { .msg_iov = &late, .msg_iovlen = 1 };
	CHECK(sendmsg(sv[1], &lm, 0) == 15);
	CHECK(pthread_join(th, NULL) == 0);
	return 0;
}
