/*  =========================================================================
    projtest - the criterion fixture of the projection tests

    See projtest.h.
    =========================================================================
*/

#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "projtest.h"
#include "testutil.h"

char *pt_dir;                 //  the SQLite files
char *pt_db;                  //  pt_dir/model.db
pu_model_t pt_model;
herald_projection_t *pt_projection;
herald_projection_t *pt_other;
herald_agent_t *pt_agent2;

void
pt_setup (void)
{
    memset (&pt_model, 0, sizeof pt_model);
    pt_model.backend = HERALD_PROJECTION_SQLITE;
    at_setup ("projection", "projection-state");
    pt_dir = tu_tmpdir_new ("projection-db");
    cr_assert_not_null (pt_dir);
    pt_db = tu_path (pt_dir, "model.db");
    herald_agent_options_t options;
    au_options (&options, at_broker, NULL);    //  a projection needs no state_dir
    options.retry_max_ms = 50;
    at_agent = herald_agent_new ("projection-test", &options);
    cr_assert_not_null (at_agent, "%s", herald_agent_last_error ());
}

pid_t pt_example;

void
pt_teardown (void)
{
    if (pt_example > 0) {
        kill (pt_example, SIGKILL);
        waitpid (pt_example, NULL, 0);
        pt_example = 0;
    }
    herald_projection_destroy (&pt_projection);
    herald_projection_destroy (&pt_other);
    herald_agent_destroy (&pt_agent2);
    free (pt_db);
    pt_db = NULL;
    tu_tmpdir_destroy (&pt_dir);
    at_teardown ();
}

static const char *s_prefixes [] = { "stock.", NULL };

void
pt_options (herald_projection_options_t *options, const char *database)
{
    herald_projection_options_init (options);
    options->database = database;
    options->prefixes = s_prefixes;
    options->setup = pu_model_setup;
    options->reset = pu_model_reset;
    options->apply = pu_model_apply;
    options->arg = &pt_model;
}

herald_projection_t *
pt_open (herald_agent_t *agent, const char *name, const herald_projection_options_t *options)
{
    herald_projection_t *projection = herald_projection_new (agent, name, options);
    cr_assert_not_null (projection, "herald_projection_new: %s", herald_agent_last_error ());
    return projection;
}

uint64_t
pt_publish (size_t count)
{
    cr_assert_eq (au_publish (at_broker->api, TOPICS, 5, count, WAIT_MS), 0);
    int64_t head = au_head (at_broker->api, WAIT_MS);
    cr_assert_gt (head, 0);
    return (uint64_t) head;
}

int64_t
pt_int (const char *sql)
{
    return pu_query_int (HERALD_PROJECTION_SQLITE, pt_db, sql);
}

herald_projection_status_t
pt_status (herald_projection_t *projection)
{
    herald_projection_status_t status;
    cr_assert_eq (herald_projection_status (projection, &status), HERALD_OK);
    return status;
}

//  The model is exactly events 1..head, each once
void
pt_assert_model (uint64_t head)
{
    cr_assert_eq (pt_int ("SELECT count(*) FROM ledger"), (int64_t) head);
    cr_assert_eq (pt_int ("SELECT min(seq) FROM ledger"), 1);
    cr_assert_eq (pt_int ("SELECT max(seq) FROM ledger"), (int64_t) head);
    int64_t total = 0;
    for (uint64_t seq = 1; seq <= head; seq++)
        total += (int64_t) (seq % 7) + 1;
    cr_assert_eq (pt_int ("SELECT total FROM totals"), total);
    cr_assert_eq (pt_int ("SELECT sum(qty) FROM stock"), total);
    cr_assert_eq (pt_int ("SELECT events FROM totals"), (int64_t) head);
}
