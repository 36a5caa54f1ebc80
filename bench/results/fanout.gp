# Fanout, saturated: events delivered per second, all subscribers: drawn by bench/compare/report.py from fanout.dat
set terminal pngcairo size 1100,560 font ",10" noenhanced
set output 'fanout.png'
set style data histogram
set style histogram errorbars gap 1 lw 1
set boxwidth 0.9
set key outside right top noautotitle
set grid ytics
set datafile missing "-"
set xtics nomirror
set bars front
set label "herald 27213d1 · 2026-12-05 18:30 UTC · full; 3 run(s) · bar: median over the runs, whisker: min–max" at screen 0.01, screen 0.015 font ",9"
set label "Herald's PUB/SUB has no backpressure: at 16 sub it dropped events at the fanout high-water mark (see summary.md)." at screen 0.01, screen 0.050 font ",9"
set label "Saturated: each publisher as fast as its window allows, so each system runs at its own load (equal load: fanout_latency.png)." at screen 0.01, screen 0.085 font ",9"
set title "Fanout, saturated: events delivered per second, all subscribers"
set bmargin at screen 0.200
set ylabel "million events/s"
unset logscale y
set yrange [0:*]
set format y "%g"
plot 'fanout.dat' index 0 using 2:3:4:xtic(1) title "Herald async" lc rgb "#807dba" fs solid 0.85 border -1, \
     '' index 0 using 5:6:7:xtic(1) title "NATS JetStream" lc rgb "#1b9e77" fs solid 0.85 border -1, \
     '' index 0 using 8:9:10:xtic(1) title "Redis everysec" lc rgb "#fdb863" fs solid 0.85 border -1, \
     '' index 0 using 11:12:13:xtic(1) title "raw ZeroMQ PUB/SUB (limit)" lc rgb "#969696" fs solid 0.85 border -1
