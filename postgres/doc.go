// Package postgres is keter's PostgreSQL plugin: it gives each app that
// asks its own login role and database, and the environment that lets the
// app's units reach them.
//
// It owns ROOT/etc/postgres.yaml (Keter's layout: app name → {name, user,
// pass, server, port}), the only record of which database belongs to which
// app; an entry, once written, always wins. It talks to PostgreSQL through
// pgx with an admin role that needs only CREATEDB and CREATEROLE.
//
// It must not drop anything on its own: removing an app keeps its data;
// only Drop, called by an operator's explicit command, removes it. It does
// not hand the environment to systemd: the caller passes it through the
// units' secret channel.
package postgres
