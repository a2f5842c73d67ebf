/* Memory semantics as Linux has them (issue 12): SEGV_ACCERR for a
 * PROT_NONE page, a 1 TiB PROT_NONE reservation, MAP_32BIT below 2 GiB,
 * mprotect over a hole (the pages before it change, then ENOMEM), SIGBUS
 * past the end of a mapped file, MADV_REMOVE's errors, PR_GET_AUXV. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include "warptest.h"
#ifndef PR_GET_AUXV
#define PR_GET_AUXV 0x41555856
#endif

static sigjmp_buf jb;
static volatile int got_sig, got_code;
static void *volatile got_addr;

static void on_fault(int s, siginfo_t *i, void *u)
{
	(void)u;
	got_sig = s;
	got_code = i->si_code;
	got_addr = i->si_addr;
	siglongjmp(jb, 1);
}

/* Touches p (a write, or a read): what signal and code it got. */
static const char *touch(volatile char *p, int write)
{
	static char buf[64];
	got_sig = 0;
	if (!sigsetjmp(jb, 1)) {
		if (write)
			*p = 1;
		else
			(void)*p;
	}
	if (!got_sig)
		return "no signal";
	snprintf(buf, sizeof buf, "%s code %d%s", got_sig == SIGSEGV ? "SIGSEGV" : got_sig == SIGBUS ? "SIGBUS" : "other",
		 got_code, got_addr == p ? " at the address" : " elsewhere");
	return buf;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER };
	CHECK(sigaction(SIGSEGV, &sa, 0) == 0 && sigaction(SIGBUS, &sa, 0) == 0);
	long pg = sysconf(_SC_PAGESIZE);

	char *none = mmap(0, pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(none != MAP_FAILED);
	printf("write to PROT_NONE: %s\n", touch(none, 1));
	printf("read of PROT_NONE: %s\n", touch(none, 0));
	CHECK(munmap(none, pg) == 0);
	printf("read of an unmapped page: %s\n", touch(none, 0));

	void *huge = mmap(0, 1ull << 40, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	printf("1 TiB PROT_NONE reservation: %s\n", huge == MAP_FAILED ? errname(errno) : "ok");
	if (huge != MAP_FAILED)
		CHECK(munmap(huge, 1ull << 40) == 0);

	char *low = mmap(0, pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	CHECK(low != MAP_FAILED);
	printf("MAP_32BIT: %s\n", (unsigned long)low + pg <= (1ul << 31) ? "below 2 GiB" : "above 2 GiB");
	low[0] = 1;

	char *t = mmap(0, 3 * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(t != MAP_FAILED);
	CHECK(munmap(t + pg, pg) == 0);
	printf("mprotect over a hole: %s\n", mprotect(t, 3 * pg, PROT_READ) ? errname(errno) : "0");
	printf("  the page before it: %s\n", touch(t, 1));
	printf("  the page after it: %s\n", touch(t + 2 * pg, 1));
	printf("mprotect starting in the hole: %s\n", mprotect(t + pg, 2 * pg, PROT_NONE) ? errname(errno) : "0");
	printf("  the page after it: %s\n", touch(t + 2 * pg, 1));

	char path[300];
	snprintf(path, sizeof path, "%s/memory-XXXXXX", argc > 1 ? argv[1] : "/tmp");
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(unlink(path) == 0);
	CHECK(write(fd, "hello", 5) == 5);
	/* Three pages of the file, and a fourth page (another mapping) after them. */
	char *area = mmap(0, 4 * pg, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(area != MAP_FAILED);
	char *f = mmap(area, 3 * pg, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
	CHECK(f == area);
	printf("the file's page: %.5s, then %s\n", f, f[pg - 1] == 0 ? "zeros" : "bytes");
	printf("a page past the file's end: %s\n", touch(f + pg, 0));
	printf("the last page past it: %s\n", touch(f + 3 * pg - 1, 0));
	/* The neighbour makes mremap's growth move the mapping. */
	char *g = mremap(f, 3 * pg, 4 * pg, MREMAP_MAYMOVE);
	CHECK(g != MAP_FAILED);
	printf("moved by mremap: %s; the file's page: %.5s; past the end still: %s\n", g != f ? "yes" : "no", g,
	       touch(g + 2 * pg, 0));
	printf("pread into a page past the end: %s\n", pread(fd, g + pg, 1, 0) < 0 ? errname(errno) : "read");
	printf("MADV_REMOVE on the file mapping: %s\n", madvise(g, pg, MADV_REMOVE) ? errname(errno) : "0");
	printf("MADV_REMOVE on anonymous memory: %s\n", madvise(low, pg, MADV_REMOVE) ? errname(errno) : "0");

	unsigned long aux[128] = { 0 };
	long n = prctl(PR_GET_AUXV, aux, sizeof aux, 0, 0);
	int pagesz = 0;
	for (int i = 0; i + 1 < 128 && aux[i] != AT_NULL; i += 2)
		if (aux[i] == AT_PAGESZ && aux[i + 1] == (unsigned long)pg)
			pagesz = 1;
	printf("PR_GET_AUXV: %s, AT_PAGESZ %s\n", n > 0 && n <= (long)sizeof aux ? "its size" : errname(errno), pagesz ? "found" : "missing");
	printf("PR_GET_AUXV with arg4: %s\n", prctl(PR_GET_AUXV, aux, sizeof aux, 1, 0) < 0 ? errname(errno) : "0");
	puts("EXIT-SUCCESS");
	return 0;
}
