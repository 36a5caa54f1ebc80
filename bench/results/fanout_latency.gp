set terminal pngcairo size 900,480 font ",10"
set output '/tmp/run2/fanout_latency.png'
set title "Fanout at 5,000 events/s: publish-to-deliver latency (ms, log scale)"
set ylabel "ms"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key outside right top
set grid ytics
set datafile missing "-"
set yrange [0.1:*]
set logscale y
set xtics nomirror
set format y "%g"
colors = "#bcbddc #a6dba0 #fdd0a2 #54278f #1b9e77 #e6550d"
plot for [i=2:7] '/tmp/run2/fanout_latency.dat' using i:xtic(1) title columnheader(i)     lc rgb word(colors, i - 1)
