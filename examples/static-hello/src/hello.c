/* A program for an image with nothing else in it: linked statically, so it needs no libc,
 * no shell and no loader in the image. */
#include <stdio.h>

int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "scratch";
    printf("hello from %s\n", who);
    return 0;
}
