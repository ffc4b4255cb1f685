#!/bin/sh
printf 'Status: abc\nContent-Type: text/plain\n\nnot this\n'
