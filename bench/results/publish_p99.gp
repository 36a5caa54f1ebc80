# ACK latency p99 AT SATURATION: each publisher as fast as its 6,400-event window allows (the latency is mostly queueing in that window: in flight / rate; ms, log scale): drawn by bench/compare/report.py from publish_p99.dat
set terminal pngcairo size 1100,560 font ",10" noenhanced
set output 'publish_p99.png'
set style data histogram
set style histogram errorbars gap 1 lw 1
set boxwidth 0.9
set key outside right top noautotitle
set grid ytics
set datafile missing "-"
set xtics nomirror
set bars front
set label "herald 27213d1 · 2026-12-05 18:30 UTC · full; 3 run(s) · bar: median over the runs, whisker: min–max" at screen 0.01, screen 0.015 font ",9"
set label "Measured at each system's own saturated rate, not at equal load: a system that ACKs faster drains its window faster." at screen 0.01, screen 0.050 font ",9"
set label "Redis sends one XADD per event, pipelined and flushed 100 at a time. Every publisher keeps 6,400 events in flight." at screen 0.01, screen 0.085 font ",9"
set label "each, as NATS's js_PublishAsync sends one message per event, the like-for-like case." at screen 0.01, screen 0.120 font ",9"
set label "Batching: Herald's \"100 events/PUBLISH\" bars send 100 events per request with one ACK per request; its \"1 event/PUBLISH\" bars send one event per request with one ACK" at screen 0.01, screen 0.155 font ",9"
set title "ACK latency p99 AT SATURATION: each publisher as fast as its 6,400-event window allows\n(the latency is mostly queueing in that window: in flight / rate; ms, log scale)"
set bmargin at screen 0.270
set ylabel "ms"
set logscale y
set yrange [1:*]
set format y "%g"
plot 'publish_p99.dat' index 0 using 2:3:4:xtic(1) title "Herald sync, 100 events/PUBLISH" lc rgb "#3f007d" fs solid 0.85 border -1, \
     '' index 0 using 5:6:7:xtic(1) title "Herald sync, 1 event/PUBLISH" lc rgb "#3f007d" fs pattern 2 border -1, \
     '' index 0 using 8:9:10:xtic(1) title "Redis always, no dedup" lc rgb "#d95f02" fs solid 0.85 border -1, \
     '' index 0 using 11:12:13:xtic(1) title "Redis always + Lua dedup" lc rgb "#e7298a" fs solid 0.85 border -1, \
     '' index 0 using 14:15:16:xtic(1) title "Herald async, 100 events/PUBLISH" lc rgb "#807dba" fs solid 0.85 border -1, \
     '' index 0 using 17:18:19:xtic(1) title "Herald async, 1 event/PUBLISH" lc rgb "#6a51a3" fs pattern 5 border -1, \
     '' index 0 using 20:21:22:xtic(1) title "NATS JetStream 2.9" lc rgb "#1b9e77" fs solid 0.85 border -1, \
     '' index 0 using 23:24:25:xtic(1) title "Redis everysec, no dedup" lc rgb "#fdb863" fs solid 0.85 border -1, \
     '' index 0 using 26:27:28:xtic(1) title "Redis everysec + Lua dedup" lc rgb "#f1a1c8" fs solid 0.85 border -1
