/* Shared helpers for the test programs: libc only, no output of addresses,
 * pids or times, so a program prints the same bytes natively and recorded. */
#ifndef WARPTEST_H
#define WARPTEST_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* xorshift64: a seeded sequence of garbage, the same on every run. */
static inline uint64_t xorshift64(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* FNV-1a, 64 bit: a checksum that needs no library. */
#define FNV_INIT UINT64_C(0xcbf29ce484222325)
static inline uint64_t fnv1a(uint64_t h, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/* The symbolic name of an errno value, so output does not depend on the
 * wording of strerror(). */
static inline const char *errname(int e)
{
	switch (e) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EINTR: return "EINTR";
	case EIO: return "EIO";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EEXIST: return "EEXIST";
	case ENOTDIR: return "ENOTDIR";
	case EISDIR: return "EISDIR";
	case EINVAL: return "EINVAL";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOTTY: return "ENOTTY";
	case ENOSPC: return "ENOSPC";
	case ESPIPE: return "ESPIPE";
	case EPIPE: return "EPIPE";
	case ERANGE: return "ERANGE";
	case ENOSYS: return "ENOSYS";
	case ENOTEMPTY: return "ENOTEMPTY";
	case EOWNERDEAD: return "EOWNERDEAD";
	case EBUSY: return "EBUSY";
	case ETIMEDOUT: return "ETIMEDOUT";
	case EDEADLK: return "EDEADLK";
	case EFBIG: return "EFBIG";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ELOOP: return "ELOOP";
	case ENODATA: return "ENODATA";
	case E2BIG: return "E2BIG";
	case ESRCH: return "ESRCH";
	default: return "E?";
	}
}

/* Stops the program with status 1 when a call that must work fails. */
#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: check failed: %s (%s)\n",    \
				__FILE__, __LINE__, #cond, errname(errno));  \
			exit(1);                                             \
		}                                                            \
	} while (0)

/* A call's result as printed: the count, or the errno's name. */
static inline const char *result_text(long r)
{
	static char buf[32];
	if (r < 0)
		return errname(errno);
	snprintf(buf, sizeof buf, "%ld", r);
	return buf;
}

/* The time `ms` milliseconds from now on `clock` (a deadline). */
static inline struct timespec ms_from_now(clockid_t clock, long ms)
{
	struct timespec t;
	CHECK(clock_gettime(clock, &t) == 0);
	t.tv_nsec += ms * 1000 * 1000;
	t.tv_sec += t.tv_nsec / 1000000000;
	t.tv_nsec %= 1000000000;
	return t;
}

/* write() all of buf, retrying short writes. */
static inline void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0);
		p += n;
		len -= (size_t)n;
	}
}

#endif
