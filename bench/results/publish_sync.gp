# Acknowledged publish, ACK after fsync (sync class): drawn by bench/compare/report.py from publish_sync.dat
set terminal pngcairo size 1100,560 font ",10" noenhanced
set output 'publish_sync.png'
set style data histogram
set style histogram errorbars gap 1 lw 1
set boxwidth 0.9
set key outside right top noautotitle
set grid ytics
set datafile missing "-"
set xtics nomirror
set bars front
set label "herald 27213d1 · 2026-12-05 18:30 UTC · full; 3 run(s) · bar: median over the runs, whisker: min–max" at screen 0.01, screen 0.015 font ",9"
set label "No NATS JetStream bar: Debian 12's nats-server 2.9 has no fsync-before-ACK setting (sync_interval came in 2.10), so it has no sync row." at screen 0.01, screen 0.050 font ",9"
set label "Redis sends one XADD per event, pipelined and flushed 100 at a time. Every publisher keeps 6,400 events in flight." at screen 0.01, screen 0.085 font ",9"
set label "each, as NATS's js_PublishAsync sends one message per event, the like-for-like case." at screen 0.01, screen 0.120 font ",9"
set label "Batching: Herald's \"100 events/PUBLISH\" bars send 100 events per request with one ACK per request; its \"1 event/PUBLISH\" bars send one event per request with one ACK" at screen 0.01, screen 0.155 font ",9"
set title "Acknowledged publish, ACK after fsync (sync class)"
set bmargin at screen 0.270
set ylabel "thousand events/s"
unset logscale y
set yrange [0:*]
set format y "%g"
plot 'publish_sync.dat' index 0 using 2:3:4:xtic(1) title "Herald sync, 100 events/PUBLISH" lc rgb "#3f007d" fs solid 0.85 border -1, \
     '' index 0 using 5:6:7:xtic(1) title "Herald sync, 1 event/PUBLISH" lc rgb "#3f007d" fs pattern 2 border -1, \
     '' index 0 using 8:9:10:xtic(1) title "Redis always, no dedup" lc rgb "#d95f02" fs solid 0.85 border -1, \
     '' index 0 using 11:12:13:xtic(1) title "Redis always + Lua dedup" lc rgb "#e7298a" fs solid 0.85 border -1, \
     '' index 0 using 14:15:16:xtic(1) title "raw RocksDB sync, batches of 1000 (limit)" lc rgb "#969696" fs solid 0.85 border -1
