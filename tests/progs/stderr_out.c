/* Interleaves lines on stdout and stderr (unbuffered), then exits 3. The
 * test checks warpctl's own lines are told apart from the program's. */
#include "warptest.h"

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	for (int i = 0; i < 5; i++) {
		printf("out %d\n", i);
		fprintf(stderr, "err %d\n", i);
	}
	/* A line that only looks like warpctl's in the middle. */
	fprintf(stderr, "not warpctl: just text\n");
	fprintf(stderr, "last line without newline");
	return 3;
}
