/* Grows and shrinks the program break with sbrk/brk, writing and reading
 * the new memory. Prints only distances, never addresses. */
#include "warptest.h"

int main(void)
{
	/* stdio must not malloc (malloc moves the break too). */
	static char outbuf[4096];
	setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
	char *start = sbrk(0);
	CHECK(start != (char *)-1);

	CHECK(sbrk(1 << 20) == start);
	char *end = sbrk(0);
	printf("grew by %ld\n", (long)(end - start));
	for (long i = 0; i < (1 << 20); i += 512)
		start[i] = (char)(i >> 9);
	unsigned s = 0;
	for (long i = 0; i < (1 << 20); i += 512)
		s += (unsigned char)start[i];
	printf("sum %u\n", s);

	CHECK(sbrk(-(1 << 19)) != (void *)-1);
	printf("shrank to %ld\n", (long)((char *)sbrk(0) - start));
	s = 0;
	for (long i = 0; i < (1 << 19); i += 512)
		s += (unsigned char)start[i];
	printf("sum of what is left %u\n", s);

	/* Growing again gives zeroed memory where the old contents were. */
	CHECK(sbrk(1 << 19) != (void *)-1);
	s = 0;
	for (long i = 1 << 19; i < (1 << 20); i += 512)
		s += (unsigned char)start[i];
	printf("regrown part sum %u\n", s);

	CHECK(brk(start) == 0);
	printf("back to start: %d\n", (char *)sbrk(0) == start);
	/* A break far below the start is refused: the break stays. */
	brk(start - (64 << 20));
	printf("after bad brk: %d\n", (char *)sbrk(0) == start);
	puts("EXIT-SUCCESS");
	return 0;
}
