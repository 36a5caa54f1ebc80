/*  =========================================================================
    projtest - the criterion fixture of the projection tests

    test_herald_projection.c and test_herald_projection_time.c each start
    a real heraldd (agenttest.h), an agent without a state directory
    (at_agent) and a fresh directory of SQLite files (pt_dir; pt_db the
    model's file), and project tests/projutil.h's read model.  Freed by
    pt_teardown also when an assertion ended the test early.
    =========================================================================
*/

#ifndef HERALD_PROJTEST_H_INCLUDED
#define HERALD_PROJTEST_H_INCLUDED

#include "agenttest.h"
#include "projutil.h"

#define WAIT_MS         20000
#define TOPICS          "stock.sku%zu"

extern char *pt_dir;                //  the SQLite files
extern char *pt_db;                 //  pt_dir/model.db
extern pu_model_t pt_model;         //  the model's arg, zeroed per test
extern herald_projection_t *pt_projection;  //  destroyed by pt_teardown
extern herald_projection_t *pt_other;
extern herald_agent_t *pt_agent2;
extern pid_t pt_example;            //  a child process, killed by pt_teardown

void
    pt_setup (void);
void
    pt_teardown (void);

//  Options projecting the model from "stock." into database
void
    pt_options (herald_projection_options_t *options, const char *database);

//  herald_projection_new, asserted
herald_projection_t *
    pt_open (herald_agent_t *agent, const char *name, const herald_projection_options_t *options);

//  Publish count events on TOPICS (5 topics); the broker's head after
uint64_t
    pt_publish (size_t count);

//  One number of pt_db
int64_t
    pt_int (const char *sql);

herald_projection_status_t
    pt_status (herald_projection_t *projection);

//  Asserts that pt_db holds exactly events 1..head, each once
void
    pt_assert_model (uint64_t head);

#endif
