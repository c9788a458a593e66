#ifndef NOOPS_SCHEDULE_H
#define NOOPS_SCHEDULE_H
#include <stdint.h>
#include <time.h>

struct schedule {
    uint64_t field[5];        /* bit sets: minute, hour, day of month, month, day of week */
    int dom_any, dow_any;     /* '*' there: the classic either-day rule needs to know */
};

/* The five fields at the start of `spec` into `s`; a pointer past them, or NULL when they do not parse. */
const char *schedule_parse(const char *spec, struct schedule *s);
/* Whether the minute of unix time `t` (UTC) is one of the schedule's. */
int schedule_matches(const struct schedule *s, time_t t);
#endif
