#!/bin/sh
printf "Content-Type: text/plain\n\nhidden ran\n"
