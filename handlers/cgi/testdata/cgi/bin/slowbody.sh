#!/bin/sh
printf 'Content-Type: text/plain\n\npartial\n'
sleep 100
