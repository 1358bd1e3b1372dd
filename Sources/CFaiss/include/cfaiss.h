#ifndef CFAISS_H
#define CFAISS_H
#ifdef __cplusplus
extern "C" {
#endif
int cfaiss_version(void);
#ifdef __cplusplus
}
#endif
#endif
