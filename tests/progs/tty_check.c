/* Run on a terminal: says whether stdin and stdout are terminals, the
 * window size it was given, and echoes one line it reads from the terminal.
 * Natively and recorded the output (through the pty) must be the same. */
#include <sys/ioctl.h>
#include <termios.h>
#include "warptest.h"

int main(void)
{
	printf("stdin tty %d, stdout tty %d\n", isatty(0), isatty(1));
	struct winsize ws;
	CHECK(ioctl(1, TIOCGWINSZ, &ws) == 0);
	printf("window %dx%d\n", ws.ws_col, ws.ws_row);
	struct termios t;
	CHECK(tcgetattr(0, &t) == 0);
	printf("canonical %d\n", (t.c_lflag & ICANON) != 0);
	fflush(stdout);
	char line[256];
	CHECK(fgets(line, sizeof line, stdin) != NULL);
	printf("read: %s", line);
	puts("EXIT-SUCCESS");
	return 0;
}
